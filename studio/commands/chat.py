"""`studio chat RUN`: the base model's answer and the fine-tuned one, side by side.

One base is loaded with the run's adapter; the base answer comes from the same weights with the
adapter switched off. With --prompt it answers once; without, it is an interactive chat (each
side keeps its own history; /reset clears them, /quit or Ctrl-D leaves). Answers are model output:
printed through `visible()`, so a stray escape sequence cannot drive the terminal.
"""
from __future__ import annotations

import sys

from ._command import Args, argument, option, studio_command
from ._common import out, out_json, workspace_path


def load(args: Args):
    """(session, run dir) for a CLI command naming one run."""
    from training import runs

    run_dir = runs.find_run(workspace_path(args) / "runs", args.run)
    from training.inference import load_session

    return load_session(run_dir, device=args.device), run_dir


def _gen(args: Args) -> dict:
    return {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
            "seed": args.seed}


@studio_command("chat", "chat with a finished run: base and adapter answers side by side", json_flag=True,
                epilog="examples: studio chat RUN --prompt '用Python实现快速排序' | studio chat RUN --temperature 0")
@argument("run", metavar="RUN", help="run id (or a unique prefix, or a path)")
@option("--prompt", metavar="TEXT", help="answer this once and exit (default: interactive)")
@option("--system", metavar="TEXT", help="system message")
@option("--max-new-tokens", type=int, default=256, metavar="N", help="answer length limit (default 256)")
@option("--temperature", type=float, default=0.7, metavar="T", help="0 = greedy (default 0.7)")
@option("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling (default 1.0)")
@option("--seed", type=int, metavar="N", help="sampling seed, for answers you can reproduce")
@option("--no-base", is_flag=True, help="only the adapter's answer")
@option("--device", metavar="DEV", help="cpu, cuda, cuda:1 (default: cuda when present)")
def command(args: Args) -> int:
    from curation.errors import StudioError
    from training.quiet import quiet_libraries

    quiet_libraries(verbose=args.verbose)  # before anything imports transformers
    if args.max_new_tokens < 1:
        raise StudioError("--max-new-tokens must be 1 or more")
    session, run_dir = load(args)
    run = session.runs[0]
    note = " (untrained tiny base: its answers mean nothing)" if run.untrained_base else ""
    base_label = f"base {run.base}{note}"
    tuned_label = f"{'full fine-tune' if run.method == 'full' else 'adapter'} {run.name}"
    system = [{"role": "system", "content": args.system}] if args.system else []
    if args.prompt is not None:
        chat = system + [{"role": "user", "content": args.prompt}]
        answers = {}
        if not args.no_base:
            answers["base_answer"] = session.generate(chat, adapter=None, **_gen(args)).text
        answers["adapter_answer"] = session.generate(chat, adapter=session.default_adapter, **_gen(args)).text
        if args.json:
            out_json({"run": run.name, "base_model": run.base, "untrained_base": run.untrained_base,
                      "prompt": args.prompt, **answers})
        else:
            if "base_answer" in answers:
                out(f"── {base_label} ──")
                out(answers["base_answer"])
            out(f"── {tuned_label} ──")
            out(answers["adapter_answer"])
        return 0
    return interactive(session, args, base_label, tuned_label, system)


def interactive(session, args: Args, base_label: str, tuned_label: str, system: list) -> int:
    from curation.safe_text import visible

    histories = {"base": list(system), "adapter": list(system)}
    sides = [("adapter", session.default_adapter, tuned_label)]
    if not args.no_base:
        sides.insert(0, ("base", None, base_label))
    out(f"chatting with {tuned_label}; /reset clears the history, /quit leaves")
    while True:
        try:
            prompt = input("you> ")
        except (EOFError, KeyboardInterrupt):
            out()
            return 0
        if prompt.strip() in ("/quit", "/exit"):
            return 0
        if prompt.strip() == "/reset":
            histories = {"base": list(system), "adapter": list(system)}
            out("history cleared")
            continue
        if not prompt.strip():
            continue
        for key, adapter, label in sides:
            histories[key].append({"role": "user", "content": prompt})
            out(f"── {label} ──")
            stream = session.stream(histories[key], adapter=adapter, **_gen(args))
            try:
                for piece in stream:
                    sys.stdout.write(visible(piece))
                    sys.stdout.flush()
            except KeyboardInterrupt:
                stream.close()
                out("\n(stopped)")
            out()
            histories[key].append({"role": "assistant", "content": stream.completion.text})
