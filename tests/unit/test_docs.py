"""The README's settings table is generated from the settings themselves; keep it in step."""

import re
from pathlib import Path

from jobwire.config import describe

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_table_matches_the_code():
    text = README.read_text()
    table = re.search(r"<!-- settings-table.*?-->\n(.*?)<!-- /settings-table -->", text, re.S)
    assert table is not None
    rows = [line for line in table.group(1).splitlines()[2:] if line.startswith("| `")]
    expected = [f"| `{name}` | {'—' if default == 'None' else default} | {meaning} |"
                for name, default, meaning in describe()]
    assert rows == expected
