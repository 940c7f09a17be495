"""`studio export-model RUN`: a finished run as files other tools serve.

`--gguf` merges the adapter into its base (as `studio merge`, into RUN/merged, reused when fresh),
writes RUN/export/RUN-QUANT.gguf (q8_0 or f16) for llama.cpp and Ollama with a `Modelfile` beside
it, and checks it: transformers loads the GGUF back and its logits are compared with the merged
model's (`--no-check` skips). `--vllm` prints a `vllm serve BASE --enable-lora ...` command for the
adapter as it is and writes it to RUN/export/vllm.sh. The work is training/gguf_export.py.
"""
from __future__ import annotations

from pathlib import Path

import click

from ._command import Args, argument, option, studio_command
from ._common import out, out_json, workspace_path


@studio_command("export-model", "export a run for llama.cpp/Ollama (GGUF + Modelfile) or vLLM (a serve command)",
                json_flag=True,
                epilog="examples: studio export-model RUN --gguf --quant q8_0 | studio export-model RUN --vllm")
@argument("run", metavar="RUN", help="run id (or a unique prefix, or a path)")
@option("--gguf", is_flag=True,
        help="merge the adapter and write a GGUF file and an Ollama Modelfile (the default when "
             "neither --gguf nor --vllm is given)")
@option("--vllm", is_flag=True, help="print a vLLM command serving the adapter (--enable-lora) and write it to vllm.sh")
@option("--quant", type=click.Choice(("q8_0", "f16")), default="q8_0",
        help="GGUF weights: q8_0 (8-bit, about half the size of f16) or f16 (default: q8_0)")
@option("--out", type=click.Path(path_type=Path), metavar="DIR", help="output folder (default: RUN_DIR/export)")
@option("--no-check", is_flag=True, help="skip loading the GGUF back and comparing its logits with the merged model's")
@option("--device", metavar="DEV", help="where to merge and check: cpu, cuda (default: cuda when present)")
def command(args: Args) -> int:
    from training.quiet import quiet_libraries

    quiet_libraries(verbose=args.verbose)  # before anything imports transformers

    from training import runs
    from training.gguf_export import export_run

    gguf = args.gguf or not args.vllm
    run_dir = runs.find_run(workspace_path(args) / "runs", args.run)
    say = None if args.json else (lambda m: out(f"  {m}"))
    result = export_run(run_dir, gguf=gguf, vllm=args.vllm, quant=args.quant, out_dir=args.out,
                        check=not args.no_check, device=args.device, progress=say)
    if args.json:
        out_json(result.to_dict())
        return 0 if result.ok else 1
    out(f"exported {result.run} into {result.out_dir}")
    if result.gguf:
        g = result.gguf
        kinds = " + ".join(f"{n} {k}" for k, n in sorted(g.tensor_types.items()))
        out(f"  gguf: {g.path} ({g.size_bytes / 1e6:.1f} MB, {g.arch}, {g.quant}: {kinds} tensors), "
            f"from {result.merged_dir}")
        if result.check:
            out(f"  check: {result.check.summary()}")
            if not result.check.ok:
                out("  WARNING: the GGUF does not answer like the merged model; try --quant f16 and compare")
        else:
            out("  check: skipped (--no-check)")
        out(f"  ollama: {result.modelfile}; run: cd {result.out_dir} && ollama create {result.run} -f Modelfile")
    if result.vllm:
        out(f"  vllm: {result.vllm.line}")
        out(f"        (also in {result.vllm_script})")
        for note in result.vllm.notes:
            out(f"        note: {note}")
    for note in result.notes:
        if not result.vllm or note not in result.vllm.notes:
            out(f"  note: {note}")
    return 0 if result.ok else 1
