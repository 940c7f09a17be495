"""SampleView: one sample in full beside the review list: the conversation (system, user and
assistant turns) or raw text, then quality flags, the duplicate cluster, lineage, earlier versions
and the operations that touched it.

Everything from data is built into rich `Text` through `visible()`: markup-looking text is shown
as typed and escape sequences as `\\x1b`, never interpreted.
"""
from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from curation.browse import SampleDetail
from curation.safe_text import visible

ROLE_STYLE = {"system": "bold magenta", "user": "bold cyan", "assistant": "bold green", "tool": "bold yellow"}


def _tool_call_line(call: dict) -> Text:
    """`→ name(arguments)` for one of an assistant turn's tool calls (OpenAI shape)."""
    f = call.get("function") or {}
    return Text(visible(f"→ {f.get('name', '?')}({f.get('arguments', '')})", single_line=True), style="yellow")


def _tool_schema_line(tool: dict) -> Text:
    """`  name(a, b): description` for one offered tool ({"type": "function", "function": {...}})."""
    f = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    params = (f.get("parameters") or {}).get("properties") if isinstance(f.get("parameters"), dict) else None
    line = Text("  ")
    line.append(visible(str(f.get("name", "?")), single_line=True), style="bold")
    line.append("(" + visible(", ".join(map(str, params or {})), single_line=True) + ")")
    if f.get("description"):
        line.append(": " + visible(str(f["description"]), single_line=True), style="dim")
    return line


def render_detail(d: SampleDetail) -> Group:
    parts: list[Text] = []
    head = Text()
    head.append(f"#{d.id}", style="bold")
    head.append(f"  {d.status}", style={"approved": "green", "rejected": "red"}.get(d.status, "yellow"))
    head.append(f"  {d.kind}  {d.lang or '--'}  v{d.version}")
    if d.judge_score is not None:
        head.append(f"  score {d.judge_score:g}")
    parts.append(head)
    src = Text(style="dim")
    if d.source_file:
        src.append(visible(d.source_file, single_line=True))
        if d.source_row is not None:
            src.append(f":{d.source_row}")
    if d.source_id:
        src.append(f"  id {visible(d.source_id, single_line=True)}")
    if d.parent_id is not None:
        src.append(f"  from #{d.parent_id} by {visible(d.operation or '?', single_line=True)}")
    elif d.operation:
        src.append(f"  by {visible(d.operation, single_line=True)}")
    if src.plain:
        parts.append(src)
    parts.append(Text(""))
    if d.kind == "text":
        parts.append(Text("text", style="bold"))
        parts.append(Text(visible(d.text)))
    else:
        if d.system:
            parts.append(Text("system", style=ROLE_STYLE["system"]))
            parts.append(Text(visible(d.system)))
        if d.tools:  # the functions the model is offered: name(parameters) and what each does
            parts.append(Text("tools", style=ROLE_STYLE["tool"]))
            parts.extend(_tool_schema_line(t) for t in d.tools if isinstance(t, dict))
        for m in d.messages:
            role = str(m.get("role", "?"))
            label = Text(visible(role, single_line=True), style=ROLE_STYLE.get(role, "bold"))
            if m.get("name") or m.get("tool_call_id"):  # a tool result: which function, which call
                label.append(" " + visible(" ".join(str(m[k]) for k in ("name", "tool_call_id") if m.get(k)), single_line=True), style="dim")
            if m.get("weight") == 0:
                label.append("  weight 0: not trained", style="dim")
            parts.append(label)
            if m.get("content") or not m.get("tool_calls"):
                parts.append(Text(visible(str(m.get("content", "")))))
            parts.extend(_tool_call_line(c) for c in m.get("tool_calls") or () if isinstance(c, dict))
    if d.flags:
        parts.append(Text(""))
        parts.append(Text("flags", style="bold red"))
        for f in d.flags:
            line = Text(f"  {visible(f.rule_id, single_line=True)}")
            if f.value is not None:
                line.append(f"  {f.value:g}" + (f" (threshold {f.threshold:g})" if f.threshold is not None else ""))
            if f.detail:
                line.append(f"  {visible(f.detail, single_line=True)}", style="dim")
            parts.append(line)
    if d.cluster is not None:
        c = d.cluster
        parts.append(Text(""))
        line = Text(f"cluster {c.id}", style="bold yellow")
        line.append(f"  {c.method} on {c.fields}, {len(c.members)} members, keeper #{c.keeper_id} ({c.keeper_chosen_by})", style="")
        parts.append(line)
        if d.duplicate_of is not None:
            parts.append(Text(f"  duplicate of #{d.duplicate_of}: left out of every split"))
    if d.judge_reason:
        parts.append(Text(""))
        parts.append(Text("judge", style="bold"))
        parts.append(Text(visible(d.judge_reason)))
    if d.versions:
        parts.append(Text(""))
        parts.append(Text(f"earlier versions: {', '.join('v%d' % v.version for v in d.versions)}", style="bold"))
    if d.history:
        parts.append(Text(""))
        parts.append(Text("history", style="bold"))
        for h in d.history[-8:]:
            line = Text(f"  op {h['op_id']} {visible(str(h['kind']), single_line=True)}")
            if h.get("old_status") != h.get("new_status"):
                line.append(f" {h.get('old_status')}→{h.get('new_status')}")
            if h.get("undone_by"):
                line.append(f" (undone by op {h['undone_by']})", style="dim")
            parts.append(line)
    return Group(*parts)


class SampleView(VerticalScroll):
    DEFAULT_CSS = """
    SampleView { padding: 0 1; }
    SampleView > Static { width: 100%; }
    """

    shown: SampleDetail | None = None  # the sample on display (tests and benches read it)

    def compose(self):
        yield Static(Text("No sample selected.", style="dim"), id="sample-detail")

    def show(self, detail: SampleDetail | None) -> None:
        body = self.query_one("#sample-detail", Static)
        self.shown = detail
        if detail is None:
            body.update(Text("No sample matches.", style="dim"))
        else:
            body.update(render_detail(detail))
        self.scroll_home(animate=False)
