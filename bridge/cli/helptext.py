"""The words of `bridge --help`: each command's one-line summary and its worked examples.

Kept apart from the parser so the parser reads as a list of options, and so a test can check that every
command has both (tests/acceptance/test_cli_help.py).
"""

from __future__ import annotations

SUMMARIES: dict[str, str] = {
    "serve": "run the webhook receiver, the admin API and the worker until SIGINT/SIGTERM",
    "simulator": "run the local DingTalk simulator (the work-notification API, with an inbox per user)",
    "check-config": "validate a configuration file and print a summary, secrets masked, every problem at once",
    "gen-secret": "print a fresh random webhook secret (whsec_...) or admin token",
    "send": "sign a JSON (or XML) file with a source's scheme and post it, as the source system would",
    "status": "show an approval: its cards and status bars, delivery, jobs and history",
    "jobs": "list jobs (by default the open and dead ones, newest first)",
    "retry": "put a dead job (or all dead jobs) back in the queue",
    "recall": "recall every card of an approval",
    "tail": "show what bridge does, from storage (works from another terminal)",
    "ingest": "read events as JSON lines from a file or stdin",
    "demo": "run one approval through its whole life against the built-in simulator",
    "completion": "print a shell completion script for bash or zsh",
    "migrate": "create or upgrade the storage schema now (serve also does it on start)",
    "map": "show the canonical event a payload becomes through a source's mapping (or every problem with it)",
    "render": "print the card a source's event would send, as JSON (and drawn as text on a terminal)",
}

EXAMPLES: dict[str, str] = {
    "bridge": """\
  bridge demo                                   # one approval's whole life, nothing to configure
  bridge serve --sandbox                        # bridge and the simulator, ready for `bridge send`
  bridge check-config --config bridge.toml
  (`dingbridge` and `python -m bridge` are the same command, for hosts where iproute2 owns `bridge`)""",
    "serve": """\
  bridge serve --config /etc/bridge/bridge.toml
  bridge serve --sandbox --port 8080 --sim-port 8789   # the demo set-up; --config is refused with it
  bridge serve --config bridge.toml --log-format json --log-level warning""",
    "simulator": """\
  bridge simulator --port 8789
  curl -s localhost:8789/_sim/inbox/manager01        # the cards a user has, as they look now""",
    "check-config": """\
  bridge check-config --config bridge.toml          # exit 0 and a summary, or every problem, exit 2
  bridge check-config --config bridge.toml --json   # the whole configuration as JSON, secrets masked""",
    "gen-secret": """\
  bridge gen-secret                     # whsec_<base64 of 32 random bytes>, for a standard-webhooks source
  bridge gen-secret --admin-token       # a random string for [server] admin_token
  export ERP_WEBHOOK_SECRET=$(bridge gen-secret)""",
    "send": """\
  bridge send --sandbox --source demo event.json
  bridge send --config bridge.toml --source erp --url http://127.0.0.1:8080/webhooks/erp - < event.json""",
    "status": """\
  bridge status --sandbox demo PO-2026-0042
  bridge status --config bridge.toml erp PO-2026-0042 --json""",
    "jobs": """\
  bridge jobs --sandbox                 # pending, running and dead jobs, newest first
  bridge jobs --dead --json             # the dead letters, for a script
  bridge jobs --all --limit 20          # the last 20 jobs of any state""",
    "retry": """\
  bridge retry 42                       # one dead job
  bridge retry --all-dead --json""",
    "recall": """\
  bridge recall --config bridge.toml erp PO-2026-0042""",
    "tail": """\
  bridge tail --sandbox -f              # the last 20 lines, then new ones as they happen
  bridge tail -n 0 -f --source erp      # only what happens from now on, for one source
  TZ=Asia/Shanghai bridge tail          # times in that zone (default: the local zone); --utc for UTC""",
    "ingest": """\
  bridge ingest --config bridge.toml --source erp events.jsonl
  bridge ingest --source erp -f /var/log/erp/approvals.jsonl   # like tail -f""",
    "demo": """\
  bridge demo""",
    "migrate": """\
  bridge migrate --config bridge.toml          # SQLite or PostgreSQL ([storage] url), whichever is configured""",
    "map": """\
  bridge map --config bridge.toml --source oa-dingtalk payload.json
  bridge map --source github --header X-GitHub-Delivery:72d3162e - < push.json""",
    "render": """\
  bridge render --config bridge.toml --source erp event.json
  bridge render --source erp --status approved --generation 2 event.json   # the resubmitted card, approved""",
    "completion": """\
  bridge completion bash > ~/.local/share/bash-completion/completions/bridge
  bridge completion zsh --prog dingbridge > ~/.zfunc/_dingbridge      # needs: pip install 'bridge[completion]'""",
}
