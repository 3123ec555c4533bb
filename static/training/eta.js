// How a time-left estimate reads; shared by the experiment and job pages.
window.attuneFormatEta = function (s) {
  if (s == null) return "";
  s = Math.round(s);
  if (s >= 3600) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  return s >= 60 ? Math.floor(s / 60) + " min " + (s % 60) + " s" : s + " s";
};
