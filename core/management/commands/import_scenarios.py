from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.services import ScenarioFileError, scenarios_import


class Command(BaseCommand):
    help = "Import scenarios from an EPITOME-format CSV (sp_id, seeker_post) or a JSONL file."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--source", help="Source label stored with each scenario (default: the file name).")
        parser.add_argument("--test-fraction", type=float, default=0.2, help="Share of each length quartile put in the test split.")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, file: Path, source, test_fraction, seed, **options):
        if not 0 <= test_fraction < 1:
            raise CommandError("--test-fraction must be at least 0 and below 1")
        try:
            report = scenarios_import(path=file, source=source or file.name, test_fraction=test_fraction, seed=seed)
        except ScenarioFileError as exc:
            raise CommandError(f"nothing imported: {exc}") from None
        self.stdout.write(report.summary())
