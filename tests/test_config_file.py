"""config.toml is edited, not regenerated: any value round-trips as valid TOML, an operator's
comments and other settings survive `sm connect` and `sm disconnect`, and the destination
options are declared once (`SavedDestinationOptions`), everything else derived from them."""

from __future__ import annotations

import tempfile
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stored_messages_cli.cli.common import options_for
from stored_messages_cli.config import PROJECT_KEYS, SavedDestinationOptions
from stored_messages_cli.config.projects import ProjectDestination
from stored_messages_cli.config.settings import load_settings
from stored_messages_cli.config.writer import save_projects
from stored_messages_cli.destinations import DestinationOptions

HOSTILE = ('line one\nline two\r\n\x01\x7f\t "quoted" \'single\' \\back\\slash é 日本 🙂'
           " # not a comment")

OPERATORS_FILE = '''\
# Kept by the platform team (ticket OPS-12).
retry_interval = "8h"  # our SLA with the senders

# Staging: team X owns this bucket.
[projects."1"]  # header note
url = "{one}"  # staging
mediums = ["email"]

# Production: never disconnect without a ticket.
[projects."3"]
url = "{three}"
mediums = ["email", "sms"]

# Closing note at the end of the file.
'''


def test_values_with_line_breaks_control_characters_quotes_and_unicode_round_trip(
        tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    saved = ProjectDestination(url=f"file:///{HOSTILE}/", region=HOSTILE, profile=HOSTILE,
                               accepted_failed_checks=[HOSTILE, "public_access"])
    save_projects(config, {"12345": saved})
    tomllib.loads(config.read_text(encoding="utf-8"))  # valid TOML, or this raises
    assert load_settings(config).projects == {"12345": saved}


@settings(max_examples=60, deadline=None)
@given(value=st.text(st.characters(codec="utf-8"), max_size=40),
       values=st.lists(st.text(st.characters(codec="utf-8"), max_size=10), max_size=3))
def test_any_text_value_reads_back_as_it_was_saved(value: str, values: list[str]) -> None:
    saved = ProjectDestination(url=value, region=value, role_arn=value or None,
                               accepted_failed_checks=values)
    with tempfile.TemporaryDirectory() as home:
        config = Path(home) / "config.toml"
        config.write_text('# operator\'s note\nconcurrency = 4\n')
        save_projects(config, {"1": saved})
        save_projects(config, {"1": saved, "2": saved})
        assert load_settings(config).projects == {"1": saved, "2": saved}
        assert config.read_text(encoding="utf-8").startswith("# operator's note\n")


def test_an_operators_comments_survive_connect_and_disconnect(cli, sm_home: Path,
                                                              tmp_path: Path) -> None:
    one, two, three = (f"file://{tmp_path}/{name}/" for name in ("one", "two", "three"))
    sm_home.mkdir(mode=0o700)
    config = sm_home / "config.toml"
    config.write_text(OPERATORS_FILE.format(one=one, three=three))

    assert cli("connect", two, "--project", "2").exit_code == 0
    text = config.read_text()
    assert text.startswith(OPERATORS_FILE.format(one=one, three=three))  # nothing above moved
    assert tomllib.loads(text)["projects"]["2"]["url"] == two

    assert cli("disconnect", "--project", "1").exit_code == 0
    text = config.read_text()
    for kept in ("# Kept by the platform team (ticket OPS-12).\n",
                 'retry_interval = "8h"  # our SLA with the senders\n',
                 "# Staging: team X owns this bucket.\n",
                 "# Production: never disconnect without a ticket.\n[projects.\"3\"]\n",
                 "# Closing note at the end of the file.\n"):
        assert kept in text
    assert "# staging" not in text  # the removed table's own lines went with it
    document = tomllib.loads(text)
    assert document["retry_interval"] == "8h"
    assert sorted(document["projects"]) == ["2", "3"]


def test_reconnecting_a_project_edits_its_table_in_place(cli, sm_home: Path,
                                                         tmp_path: Path) -> None:
    one, three = f"file://{tmp_path}/one/", f"file://{tmp_path}/three/"
    moved = f"file://{tmp_path}/moved/"
    sm_home.mkdir(mode=0o700)
    config = sm_home / "config.toml"
    original = OPERATORS_FILE.format(one=one, three=three)
    config.write_text(original)

    assert cli("connect", moved, "--project", "1", "--medium", "email").exit_code == 0
    assert config.read_text() == original.replace(f'"{one}"', f'"{moved}"')


def test_saving_what_was_read_leaves_the_file_byte_for_byte(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    original = OPERATORS_FILE.format(one="file:///one/", three="file:///three/")
    config.write_text(original)
    save_projects(config, load_settings(config).projects)
    assert config.read_text() == original


def test_a_destination_option_is_declared_once_and_carried_everywhere() -> None:
    saved_options = {option.name for option in fields(SavedDestinationOptions)}
    assert issubclass(DestinationOptions, SavedDestinationOptions)
    assert issubclass(ProjectDestination, SavedDestinationOptions)
    assert saved_options <= set(ProjectDestination.model_fields) == PROJECT_KEYS
    run_only = {option.name for option in fields(DestinationOptions)} - saved_options
    assert run_only == {"max_connections"}  # never saved in config.toml

    # Every saved option reaches the destination: a value unlike its default for each one.
    unusual = {name: 7 if name == "retention_days" else True
               if name == "allow_insecure_endpoint" else f"{name}-value"
               for name in saved_options}
    options = options_for(ProjectDestination(url="file:///a/", **unusual), max_connections=3)
    assert {name: getattr(options, name) for name in saved_options} == unusual
    assert options.max_connections == 3


@pytest.mark.parametrize("layout", [
    'projects."1".url = "file:///one/"\nretry_interval = 3\n',
    'projects = {"1" = {url = "file:///one/"}}\n',
    '[projects]\n"1" = {url = "file:///one/"}\n',
    '[projects]\n[projects."1"]\nurl = "file:///one/"\n',
    '   \n# only a comment\n',
])
def test_every_valid_layout_takes_an_added_changed_and_removed_project(
        tmp_path: Path, layout: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(layout)
    projects = dict(load_settings(config).projects)
    projects["9"] = ProjectDestination(url="file:///nine/", region="eu")
    save_projects(config, projects)
    assert load_settings(config).projects == projects
    if "1" in projects:
        projects["1"] = projects["1"].model_copy(update={"url": "file:///moved/"})
        save_projects(config, projects)
        assert load_settings(config).projects == projects
        del projects["1"]
        save_projects(config, projects)
    assert load_settings(config).projects == projects == {"9": projects["9"]}
