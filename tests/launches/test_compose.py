"""Command composition as POMS does it (reference/poms.md §3.9–3.10), with shell quoting."""

import subprocess

import pytest

from launches.compose import ComposeError, compose, merge_overrides


def config(**over):
    base = {
        "experiment": "nova",
        "campaign": {"id": 3, "name": "mc", "keywords": {}, "default_overrides": [], "campaign_type": ""},
        "stage": {
            "id": 7, "name": "gen", "software_version": "v1_1", "param_overrides": [], "test_param_overrides": [],
            "merge_overrides": False, "stage_type": "regular",
        },
        "job_type": {
            "id": 2, "launch_script": "fife_launch -c cfg/generic.cfg", "definition_parameters": [], "raw_keys": [],
        },
        "login_setup": {"id": 1, "launch_host": "", "launch_account": "", "launch_setup": ""},
    }  # fmt: skip
    for part, values in over.items():
        base[part] = {**base[part], **values}
    return base


def cmd(cfg, dataset="electron_1GeV", **kw):
    return compose(cfg, dataset=dataset, test=kw.pop("test", False), launcher="mengel", **kw).command


def test_it_builds_the_poms_example_command():
    cfg = config(
        job_type={
            "definition_parameters": [
                ["--stage=", "gen"],
                ["-Oglobal.sam_dataset=", "%(dataset)s"],
                ["-Oglobal.release=", "%(version)s"],
            ]
        },
        stage={"param_overrides": [["-Osubmit.N=", "5"]]},
    )
    assert cmd(cfg) == (
        "fife_launch -c cfg/generic.cfg --stage=gen -Oglobal.sam_dataset=electron_1GeV "
        "-Oglobal.release=v1_1 -Osubmit.N=5"
    )


def test_a_later_duplicate_key_replaces_the_value_but_keeps_the_position():
    assert list(merge_overrides([["-a ", "1"], ["-b ", "2"]], [["-a ", "9"]]).items()) == [("-a ", "9"), ("-b ", "2")]


@pytest.mark.parametrize(
    "merge, test, expected",
    [
        (False, False, "run --n=5 --mem=2"),
        (True, False, "run --n=5 --mem=2 --site=FNAL"),
        (False, True, "run --n=1 --mem=2"),
    ],
)
def test_override_layers_apply_in_poms_order(merge, test, expected):
    cfg = config(
        job_type={"launch_script": "run", "definition_parameters": [["--n=", "10"], ["--mem=", "2"]]},
        campaign={"default_overrides": [["--site=", "FNAL"]]},
        stage={"merge_overrides": merge, "param_overrides": [["--n=", "5"]], "test_param_overrides": [["--n=", "1"]]},
    )
    assert cmd(cfg, test=test) == expected


def test_explicit_overrides_win_even_over_test_overrides():
    cfg = config(job_type={"launch_script": "run"}, stage={"test_param_overrides": [["--n=", "1"]]})
    assert cmd(cfg, test=True, overrides=[["--n=", "3"]]) == "run --n=3"


def test_keywords_and_literal_percent():
    cfg = config(
        job_type={"launch_script": "run", "definition_parameters": [["--out=", "%%(global.outdir)s/%(energy)s"]]},
        campaign={"keywords": {"energy": "1GeV"}},
    )
    # Quoted because of the parentheses; the shell hands fife_launch exactly %(global.outdir)s/1GeV.
    assert cmd(cfg) == "run --out='%(global.outdir)s/1GeV'"


def test_an_unknown_keyword_is_a_clear_error():
    cfg = config(job_type={"launch_script": "run", "definition_parameters": [["--x=", "%(nope)s"]]})
    with pytest.raises(ComposeError, match=r"unknown keyword %\(nope\)s"):
        cmd(cfg)


@pytest.mark.parametrize("template", ["printf '%s'", "50%", "%d files"])
def test_a_bare_percent_is_refused_rather_than_formatting_the_keywords(template):
    with pytest.raises(ComposeError, match="write %% for a literal %"):
        cmd(config(job_type={"launch_script": template}))


def test_a_key_with_shell_characters_is_refused():
    cfg = config(stage={"param_overrides": [["--x=; rm -rf /", "1"]]})
    with pytest.raises(ComposeError, match="may only hold"):
        cmd(cfg)


EVIL = [
    "x; touch {marker}",
    "$(touch {marker})",
    "`touch {marker}`",
    "a' ; touch {marker}; echo '",
    "x\ntouch {marker}",
]


@pytest.mark.parametrize("evil", EVIL)
def test_no_value_can_inject_shell(tmp_path, evil):
    marker = tmp_path / "pwned"
    value = evil.format(marker=marker)
    cfg = config(
        job_type={"launch_script": "echo", "definition_parameters": [["--ds=", "%(dataset)s"]]},
        stage={"param_overrides": [["--o=", value]]},
        login_setup={"launch_setup": "export DS=%(dataset)s"},
    )
    plan = compose(cfg, dataset=value, test=False, launcher="u")
    out = subprocess.run(["bash", "-c", plan.script], capture_output=True, text=True, check=True).stdout
    assert not marker.exists()
    assert out == f"--ds={value} --o={value}\n"


def test_raw_keys_are_pasted_unquoted_by_the_template_author():
    cfg = config(
        job_type={"launch_script": "run", "definition_parameters": [["--expr ", "a b"]], "raw_keys": ["--expr "]}
    )
    assert cmd(cfg) == "run --expr a b"


@pytest.mark.parametrize("evil", EVIL)
def test_values_substituted_into_a_raw_key_are_still_quoted(tmp_path, evil):
    marker = tmp_path / "pwned"
    value = evil.format(marker=marker)
    cfg = config(
        job_type={
            "launch_script": "echo",
            "definition_parameters": [["--expr ", "defname:%(dataset)s and run 7"]],
            "raw_keys": ["--expr "],
        }
    )
    plan = compose(cfg, dataset=value, test=False, launcher="u")
    out = subprocess.run(["bash", "-c", plan.script], capture_output=True, text=True, check=True).stdout
    assert not marker.exists()
    assert out == f"--expr defname:{value} and run 7\n"


@pytest.mark.parametrize(
    "where, template, message",
    [
        ("launch_script", 'echo "ds=%(dataset)s"', r"puts %\(dataset\)s inside quotes"),
        ("launch_script", "echo 'ds=%(dataset)s'", r"puts %\(dataset\)s inside quotes"),
        ("launch_setup", 'export DS="%(dataset)s"', r"puts %\(dataset\)s inside quotes"),
        ("raw", '"%(dataset)s"', r"puts %\(dataset\)s inside quotes"),
        ("launch_script", "echo %(dataset)r", r"write keywords as %\(name\)s, not '%\(dataset\)r'"),
        ("param", "%(dataset)10s", r"not '%\(dataset\)1'"),
    ],
)
def test_templates_that_would_undo_the_quoting_are_refused(where, template, message):
    job_type = {"launch_script": "run", "definition_parameters": [], "raw_keys": ["--e "]}
    login = {}
    if where == "launch_script":
        job_type["launch_script"] = template
    elif where == "launch_setup":
        login["launch_setup"] = template
    else:
        job_type["definition_parameters"] = [["--e " if where == "raw" else "--p=", template]]
    with pytest.raises(ComposeError, match=message):
        compose(config(job_type=job_type, login_setup=login), dataset="x; id", test=False, launcher="u")


def test_quotes_in_templates_without_keywords_and_escaped_quotes_are_fine():
    cfg = config(job_type={"launch_script": 'echo "a b" \\"%(dataset)s', "definition_parameters": []})
    assert cmd(cfg, dataset="d") == 'echo "a b" \\"d'


def test_the_environment_carries_the_poms_variables():
    plan = compose(config(), dataset="d", test=True, launcher="mengel", submission_id=41, parent_id=40)
    env = plan.environment
    assert env["POMS4_CAMPAIGN_STAGE_ID"] == "7" and env["POMS_CAMPAIGN_ID"] == "7"
    assert env["POMS4_SUBMISSION_ID"] == env["POMS_TASK_ID"] == "41"
    assert env["POMS_PARENT_TASK_ID"] == "40"
    assert env["POMS4_TEST_LAUNCH"] == "True" and env["POMS_TEST"] == "1"
    assert env["POMS_CAMPAIGN_NAME"] == "mc__gen" and env["POMS_LAUNCHER"] == "mengel"
    assert env["JOBSUB_GROUP"] == env["GROUP"] == "nova"


def test_campaign_keywords_are_expanded_in_the_dataset_and_the_version_first():
    cfg = config(
        campaign={"keywords": {"energy": "1GeV", "release": "v08_00"}},
        stage={"software_version": "%(release)s_p1"},
        job_type={"launch_script": "run", "definition_parameters": [["--ds=", "%(dataset)s"], ["--v=", "%(version)s"]]},
    )
    assert cmd(cfg, dataset="mc_%(energy)s") == "run --ds=mc_1GeV --v=v08_00_p1"
    assert compose(cfg, dataset="mc_%(energy)s", test=False, launcher="u").dataset == "mc_1GeV"
