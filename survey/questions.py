"""The fixed questions of the survey: background, attitudes to AI in
mental-health care, and the attention checks.

Item keys are stable: answers, exports and personas refer to them.
Eligibility questions and consent text are per study (models) because they
are the parts an ethics board asks to change.
"""
from __future__ import annotations

from dataclasses import dataclass

PREFER_NOT = "prefer_not_to_say"
PREFER_NOT_LABEL = "Prefer not to say"


@dataclass(frozen=True)
class ChoiceItem:
    key: str  # the Answer.item_key
    label: str
    choices: tuple[tuple[str, str], ...]
    multiple: bool = False
    # The choice that asks for words ("other", "self-describe") and the prompt for them.
    text_choice: str | None = None
    text_label: str = ""
    hint: str = ""
    correct: str | None = None  # attention checks only

    @property
    def choice_keys(self) -> list[str]:
        return [k for k, _ in self.choices]

    def label_of(self, value: str) -> str:
        return dict(self.choices).get(value, value)


def _with_prefer_not(*choices):
    return tuple(choices) + ((PREFER_NOT, PREFER_NOT_LABEL),)


BACKGROUND: tuple[ChoiceItem, ...] = (
    ChoiceItem(
        "background.age_group", "What is your age group?",
        _with_prefer_not(("18_24", "18–24"), ("25_34", "25–34"), ("35_44", "35–44"), ("45_54", "45–54"),
                         ("55_64", "55–64"), ("65_plus", "65 or over")),
    ),
    ChoiceItem(
        "background.gender", "How would you describe your gender?",
        _with_prefer_not(("woman", "Woman"), ("man", "Man"), ("non_binary", "Non-binary"),
                         ("self_describe", "I describe it another way")),
        text_choice="self_describe", text_label="In your own words (optional)",
    ),
    ChoiceItem(
        "background.ethnicity", "Which of these best describes your ethnic background?",
        _with_prefer_not(("asian", "Asian or Asian British"), ("black", "Black, African or Caribbean"),
                         ("mixed", "Mixed or multiple ethnic groups"), ("white", "White"),
                         ("other", "Another ethnic group")),
        text_choice="other", text_label="Which group? (optional)",
    ),
    ChoiceItem(
        "background.diagnoses", "Which mental-health conditions have you lived with?",
        _with_prefer_not(("depression", "Depression"), ("anxiety", "Anxiety"), ("bipolar", "Bipolar disorder"),
                         ("ptsd", "PTSD or trauma"), ("ocd", "OCD"), ("eating", "An eating disorder"),
                         ("adhd", "ADHD"), ("personality", "A personality disorder"),
                         ("psychosis", "Psychosis or schizophrenia"), ("substance", "Substance use"),
                         ("other", "Something else")),
        multiple=True, text_choice="other", text_label="What else? (optional)",
        hint="Choose all that apply. A formal diagnosis is not needed.",
    ),
    ChoiceItem(
        "background.severity", "Thinking of the past year, how much has this affected your daily life?",
        _with_prefer_not(("mild", "A little"), ("moderate", "A fair amount"), ("severe", "A great deal")),
    ),
    ChoiceItem(
        "background.treatment", "Are you getting support or treatment at the moment?",
        _with_prefer_not(("therapy", "Talking therapy or counselling"), ("medication", "Medication"),
                         ("both", "Both"), ("none", "Neither at the moment")),
    ),
    ChoiceItem(
        "background.ai_use", "Have you used an AI chatbot (such as ChatGPT) for support with your mental health?",
        _with_prefer_not(("never", "Never"), ("once", "Once or twice"), ("sometimes", "Sometimes"),
                         ("often", "Often")),
    ),
)

LIKERT_5 = (("1", "Strongly disagree"), ("2", "Disagree"), ("3", "Neither agree nor disagree"),
            ("4", "Agree"), ("5", "Strongly agree"))
# Attention checks have no neutral midpoint (Prolific's guidance for fair checks).
AGREE_4 = (("strongly_disagree", "Strongly disagree"), ("disagree", "Disagree"),
           ("agree", "Agree"), ("strongly_agree", "Strongly agree"))

ATTITUDES: tuple[ChoiceItem, ...] = (
    ChoiceItem("attitude.accessible", "AI tools could make mental-health support easier for people to get.", LIKERT_5),
    ChoiceItem("attitude.empathic", "An AI system can respond with empathy, much as a therapist does.", LIKERT_5),
    ChoiceItem("attitude.errors", "I worry that AI tools give wrong or misleading information about mental health.", LIKERT_5),
    ChoiceItem("attitude.complement", "AI should only add to the work of human therapists, never replace it.", LIKERT_5),
    ChoiceItem("attitude.trust", "I trust AI tools to be safe and accurate in mental-health care.", LIKERT_5),
)

# Instructional checks: the instruction is in the question itself, so anyone
# reading it can pass; a person is flagged only after failing two.
ATTENTION_CHECKS: tuple[ChoiceItem, ...] = (
    ChoiceItem("attention.1", 'To show you are reading each question, please choose "Disagree" for this one.',
               AGREE_4, correct="disagree"),
    ChoiceItem("attention.2", 'This question checks attention. Please choose "Strongly agree".',
               AGREE_4, correct="strongly_agree"),
)
ATTENTION_FLAG_AFTER = 2
# Where each check sits: after this many items of its section.
ATTENTION_POSITION = {"attention.1": 3, "attention.2": 3}

IMPORTANCE_5 = (("1", "Not important"), ("2", "Slightly important"), ("3", "Moderately important"),
                ("4", "Very important"), ("5", "Extremely important"))

FEEDBACK_KEY = "closing.feedback"

ALL_CHOICE_ITEMS = {item.key: item for item in (*BACKGROUND, *ATTITUDES, *ATTENTION_CHECKS)}


def item_label(key: str) -> str:
    """The question a participant saw for an answer's item key (for researchers' pages)."""
    if key == FEEDBACK_KEY:
        return "Closing feedback"
    item = ALL_CHOICE_ITEMS.get(key)
    return item.label if item else key

