"""Duplicates: walk the clusters dedup found and pick the member that survives.

Left: the clusters (size, method, the least similarity of a member to the keeper, keeper, resolved)
and the selected cluster's members with their similarity to the keeper (every member reaches the
dedup threshold to its keeper: curation.dedup splits chains). Right: the keeper and the member under the cursor side by
side, their differences highlighted (studio/widgets/text_diff.py). `k` makes the member under the
cursor the keeper (`curation.dedup.set_keeper` on the writer thread: one undoable operation, kept
by later dedup runs); `n`/`p` move between clusters; `d` runs dedup as a job after asking for the
threshold; `u` undoes the last operation, as in Review; `o` opens the cluster in Review.

Clusters load a page of CLUSTER_LIMIT at a time, largest first: the next page is fetched in a
worker when the cursor comes near the end of what is loaded, so any number of clusters can be
walked without holding them all (a reload keeps as many as were loaded).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Header, Input, OptionList, Static
from textual.widgets.option_list import Option

from curation import browse, dedup
from curation.errors import StudioError
from curation.safe_text import visible

from ..bindings import bindings_for
from ..widgets.job_progress import JobProgress
from ..widgets.text_diff import diff_pair
from ._curation import app_message, op_note, open_review, run_engine_job, undo_last, undo_message

CLUSTER_LIMIT = 2000


@dataclass(frozen=True)
class Member:
    sample_id: int
    similarity: float | None
    keeper: bool
    status: str
    preview: str


@dataclass(frozen=True)
class Cluster:
    id: int
    method: str
    fields: str
    keeper_id: int
    chosen_by: str
    size: int
    resolved: bool
    members: tuple[Member, ...]

    @property
    def lowest_similarity(self) -> float | None:
        """The least similar member's similarity to the keeper (every member reaches the threshold)."""
        sims = [m.similarity for m in self.members if not m.keeper and m.similarity is not None]
        return min(sims) if sims else None


MORE_WITHIN = 20  # load the next page when the cursor is this close to the end of the loaded ones


def load_clusters(con, limit: int = CLUSTER_LIMIT, offset: int = 0) -> tuple[list[Cluster], int]:
    """`limit` clusters from `offset` (largest first) with their members, and how many there are."""
    total = browse.cluster_count(con)
    raw = dedup.list_clusters(con, limit=limit, offset=offset)
    ids = [m["sample_id"] for c in raw for m in c["members"]]
    info = browse.status_and_preview(con, ids, 80)
    out = []
    for c in raw:
        members = tuple(Member(m["sample_id"], m["similarity"], m["keeper"], *info.get(m["sample_id"], ("?", "")))
                        for m in sorted(c["members"], key=lambda m: (not m["keeper"], -(m["similarity"] or 0), m["sample_id"])))
        out.append(Cluster(c["cluster_id"], c["method"], c["fields"], c["keeper_id"], c["keeper_chosen_by"],
                           c["size"], c["resolved"], members))
    return out, total


def sample_text(d: browse.SampleDetail) -> str:
    """A sample as one plain string to compare: system and turns with their roles, or the text."""
    if d.kind == "text":
        return d.text or ""
    parts = [f"system: {d.system}"] if d.system else []
    parts += [f"{m.get('role', '?')}: {m.get('content', '')}" for m in d.messages]
    return "\n\n".join(parts)


def cluster_label(c: Cluster) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append("✓ " if c.resolved else "• ", style="green" if c.resolved else "yellow")
    t.append(f"#{c.id}", style="bold")
    t.append(f" {c.size}× {c.method}")
    low = c.lowest_similarity
    if low is not None and low < 1.0:
        t.append(f" ≥{low:.2f}")  # members' least similarity to the keeper
    t.append(f"  keep #{c.keeper_id}", style="dim")
    return t


STATUS_MARK = {"approved": ("✓", "green"), "rejected": ("✗", "red"), "pending": ("·", "yellow")}


def member_label(m: Member) -> Text:
    """`★ #id similarity status preview` on one line (cut with …, never wrapped)."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append("★ " if m.keeper else "  ", style="bold yellow")
    t.append(f"#{m.sample_id}", style="bold")
    sim = "keeper" if m.keeper else (f"{m.similarity:.2f}" if m.similarity is not None else "?")
    t.append(f" {sim:>6}")
    mark, style = STATUS_MARK.get(m.status, ("?", ""))
    t.append(f" {mark}", style=style)
    t.append(f" {visible(m.preview, single_line=True)}", style="dim")
    return t


class DedupDialog(ModalScreen["float | None"]):
    """Ask for the similarity threshold of a dedup run. Enter runs, Escape cancels."""

    DEFAULT_CSS = """
    DedupDialog { align: center middle; }
    #dedup-dialog { width: 60; height: auto; background: $panel; border: thick $primary; padding: 1 2; }
    #dedup-error { height: auto; color: $error; }
    """
    # Escape in the field leaves it first (app.leave_field); then Enter runs, Escape cancels
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("enter", "run", "Run", show=False)]

    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = threshold

    def compose(self) -> ComposeResult:
        with Vertical(id="dedup-dialog"):
            yield Static(Text("Find duplicates", style="bold"))
            yield Static(Text("Similarity threshold (0 to 1]: pairs at least this similar form a cluster. "
                              "Reviewer keeper choices are kept."))
            yield Input(f"{self.threshold:g}", id="dedup-threshold", type="number")
            yield Static("", id="dedup-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Run (Enter)", id="run", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def _submit(self) -> None:
        try:
            value = float(self.query_one(Input).value)
        except ValueError:
            value = -1.0
        if not 0.0 < value <= 1.0:
            self.query_one("#dedup-error", Static).update(Text("enter a number above 0 and at most 1, e.g. 0.8"))
            return
        self.dismiss(value)

    def on_input_submitted(self) -> None:
        self._submit()

    def action_run(self) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self._submit() if event.button.id == "run" else self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class DuplicatesScreen(Screen):
    BINDINGS = bindings_for("duplicates")
    AUTO_FOCUS = "#dup-members"
    DEFAULT_CSS = """
    #dup-clusters, #dup-members { text-wrap: nowrap; text-overflow: ellipsis; }
    #dup-main { height: 1fr; }
    #dup-left { width: 40%; max-width: 52; min-width: 28; }
    #dup-clusters { height: 2fr; border: round $primary 50%; }
    #dup-members { height: 3fr; border: round $primary 50%; }
    #dup-clusters:focus, #dup-members:focus { border: round $accent; }
    .dup-side { width: 1fr; border: round $primary 30%; padding: 0 1; }
    #dup-status { height: 1; background: $boost; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.clusters: list[Cluster] = []
        self.total_clusters = 0
        self._loading_more = False
        self._want_cluster: int | None = None   # keep this cluster selected across reloads
        self._want_member: int | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="dup-main"):
            with Vertical(id="dup-left"):
                yield OptionList(id="dup-clusters")
                yield OptionList(id="dup-members")
            with VerticalScroll(id="dup-keeper-side", classes="dup-side"):
                yield Static(Text("…", style="dim"), id="dup-keeper")
            with VerticalScroll(id="dup-other-side", classes="dup-side"):
                yield Static("", id="dup-other")
        yield Static("", id="dup-status")
        yield JobProgress()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#dup-clusters").border_title = "Clusters"
        self.query_one("#dup-members").border_title = "Members (k: keep)"
        self.query_one("#dup-keeper-side").border_title = "Keeper"
        self.query_one("#dup-other-side").border_title = "Member"
        self.members_list.focus()
        self.reload()

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.reload()

    @property
    def cluster_list(self) -> OptionList:
        return self.query_one("#dup-clusters", OptionList)

    @property
    def members_list(self) -> OptionList:
        return self.query_one("#dup-members", OptionList)

    @property
    def current_cluster(self) -> Cluster | None:
        i = self.cluster_list.highlighted
        return self.clusters[i] if i is not None and i < len(self.clusters) else None

    @property
    def current_member(self) -> Member | None:
        c, i = self.current_cluster, self.members_list.highlighted
        return c.members[i] if c is not None and i is not None and i < len(c.members) else None

    # -- loading --------------------------------------------------------------------------------
    def reload(self) -> None:
        c, m = self.current_cluster, self.current_member
        if c is not None and self._want_cluster is None:
            self._want_cluster = c.id
            self._want_member = m.sample_id if m else None
        self._load()

    @work(thread=True, exclusive=True, group="dup-clusters")
    def _load(self) -> None:
        clusters, total = load_clusters(self.app.engine.reader(), limit=max(CLUSTER_LIMIT, len(self.clusters)))
        self.app.call_from_thread(self._show_clusters, clusters, total)

    def _maybe_load_more(self) -> None:
        i = self.cluster_list.highlighted
        if (i is not None and not self._loading_more and len(self.clusters) < self.total_clusters
                and i >= len(self.clusters) - 1 - MORE_WITHIN):
            self._loading_more = True
            self._load_more(len(self.clusters))

    @work(thread=True, group="dup-more")
    def _load_more(self, offset: int) -> None:
        clusters, total = load_clusters(self.app.engine.reader(), limit=CLUSTER_LIMIT, offset=offset)
        self.app.call_from_thread(self._append_clusters, offset, clusters, total)

    def _append_clusters(self, offset: int, clusters: list[Cluster], total: int) -> None:
        self._loading_more = False
        if offset != len(self.clusters):  # a reload came in between: its list stands
            return
        self.clusters.extend(clusters)
        self.total_clusters = total
        self.cluster_list.add_options([Option(cluster_label(c), id=str(c.id)) for c in clusters])
        self._update_status()

    def _show_clusters(self, clusters: list[Cluster], total: int) -> None:
        self.clusters, self.total_clusters = clusters, total
        self._loading_more = False
        want = self._want_cluster
        self._want_cluster = None
        lst = self.cluster_list
        lst.set_options([Option(cluster_label(c), id=str(c.id)) for c in clusters])
        if clusters:
            index = next((i for i, c in enumerate(clusters) if c.id == want), 0)
            lst.highlighted = index
            self._show_members(clusters[index])
        else:
            self.members_list.clear_options()
            self.query_one("#dup-keeper", Static).update(Text("no duplicate clusters: press d to find duplicates", style="dim"))
            self.query_one("#dup-other", Static).update("")
        self._update_status()

    def _show_members(self, c: Cluster) -> None:
        want = self._want_member
        self._want_member = None
        lst = self.members_list
        lst.set_options([Option(member_label(m), id=str(m.sample_id)) for m in c.members])
        index = next((i for i, m in enumerate(c.members) if m.sample_id == want), 1 if len(c.members) > 1 else 0)
        lst.highlighted = index
        self._compare()

    @on(OptionList.OptionHighlighted, "#dup-clusters")
    def _cluster_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        c = self.current_cluster
        if c is not None and (self.members_list.option_count != len(c.members)
                              or self.members_list.get_option_at_index(0).id != str(c.members[0].sample_id)):
            self._show_members(c)
        self._update_status()
        self._maybe_load_more()

    @on(OptionList.OptionHighlighted, "#dup-members")
    def _member_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._compare()
        self._update_status()

    def _compare(self) -> None:
        c, m = self.current_cluster, self.current_member
        if c is None or m is None:
            return
        other = m.sample_id
        if m.keeper:  # on the keeper: compare it with the next member
            other = next((x.sample_id for x in c.members if not x.keeper), m.sample_id)
        sim = next((x.similarity for x in c.members if x.sample_id == other), None)
        self._load_pair(c.keeper_id, other, sim)

    @work(thread=True, exclusive=True, group="dup-diff")
    def _load_pair(self, keeper_id: int, other_id: int, similarity: float | None) -> None:
        con = self.app.engine.reader()
        try:
            keeper, other = browse.get_sample(con, keeper_id), browse.get_sample(con, other_id)
        except StudioError as exc:
            self.app.call_from_thread(self.notify, visible(app_message(exc)), severity="error")
            return
        left, right, _ = diff_pair(sample_text(keeper), sample_text(other))
        self.app.call_from_thread(self._show_pair, keeper, other, left, right, similarity)

    def _show_pair(self, keeper: browse.SampleDetail, other: browse.SampleDetail, left: Text, right: Text,
                   similarity: float | None) -> None:
        self.query_one("#dup-keeper-side").border_title = f"Keeper #{keeper.id} · {keeper.status}"
        sim = f"{similarity:.2f}" if similarity is not None else "?"
        title = f"#{other.id} · {other.status} · similarity {sim}" if other.id != keeper.id else f"#{other.id}"
        self.query_one("#dup-other-side").border_title = title
        self.query_one("#dup-keeper", Static).update(left)
        self.query_one("#dup-other", Static).update(right)

    def _update_status(self) -> None:
        c = self.current_cluster
        t = Text()
        if c is None:
            t.append("no clusters", style="dim")
        else:
            i = self.cluster_list.highlighted or 0
            t.append(f"cluster {i + 1:,}/{self.total_clusters:,}", style="bold")
            t.append(f"  #{c.id} {c.method} on {c.fields}, {c.size} members, keeper #{c.keeper_id} ({c.chosen_by})")
            t.append("  resolved" if c.resolved else "  unresolved", style="green" if c.resolved else "yellow")
            if self.total_clusters > len(self.clusters):
                t.append(f"  ({len(self.clusters):,} loaded; more load as you go down)", style="dim")
        self.query_one("#dup-status", Static).update(t)

    # -- actions --------------------------------------------------------------------------------
    def _move_cluster(self, delta: int) -> None:
        lst = self.cluster_list
        if not self.clusters:
            return
        lst.highlighted = max(0, min(len(self.clusters) - 1, (lst.highlighted or 0) + delta))

    def action_next_cluster(self) -> None:
        self._move_cluster(1)

    def action_previous_cluster(self) -> None:
        self._move_cluster(-1)

    def _write(self, fn, *args: Any, done=None, **kw: Any) -> None:
        async def wait() -> None:
            try:
                result = await asyncio.wrap_future(self.app.engine.write(fn, *args, **kw))
            except StudioError as exc:
                self.notify(visible(app_message(exc)), severity="error", timeout=8)
                return
            if done is not None:
                done(result)
            self.app.refresh_counts()
            self.reload()

        self.run_worker(wait(), group="writes")

    def action_keep(self) -> None:
        c, m = self.current_cluster, self.current_member
        if c is None or m is None:
            return
        if m.keeper and c.chosen_by == "reviewer":
            self.notify(f"#{m.sample_id} is already the keeper")
            return
        self._want_cluster, self._want_member = c.id, m.sample_id
        self._write(dedup.set_keeper, c.id, m.sample_id,
                    done=lambda op: self.notify(f"cluster {c.id}: keeping #{m.sample_id} ({op_note(op)})"))

    def action_undo(self) -> None:
        def done(undone: list) -> None:
            self.notify(undo_message(undone))

        c, m = self.current_cluster, self.current_member
        if c is not None:
            self._want_cluster, self._want_member = c.id, (m.sample_id if m else None)
        self._write(undo_last, done=done)

    @work(group="dedup-dialog")
    async def action_find_duplicates(self) -> None:
        params = await asyncio.to_thread(lambda: dedup.last_params(self.app.engine.reader()))
        threshold = await self.app.push_screen_wait(DedupDialog(params.threshold if params else dedup.DEFAULT_THRESHOLD))
        if threshold is None:
            return
        fields = params.fields if params else "sample"

        def done(result: Any) -> None:
            if isinstance(result, StudioError):
                self.notify(visible(app_message(result)), title="dedup", severity="error", timeout=10)
            else:
                self.notify(f"{result.clusters:,} clusters, {result.duplicates:,} duplicates "
                            f"(threshold {threshold:g}; {op_note(result.op_id)})", title="dedup")
            self.reload()

        run_engine_job(self.app, "dedup", dedup.find_duplicates, dedup.DedupParams(threshold, fields), on_done=done)

    async def action_open_review(self) -> None:
        c = self.current_cluster
        if c is not None:
            await open_review(self.app, browse.Filter(cluster_id=c.id))

    def action_reload(self) -> None:
        self.reload()
