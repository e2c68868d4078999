"""The run view: timeline with replay, score curve, candidates, best prompts, transcripts.

Every model-generated string (prompts, answers, errors) reaches the screen as
a rich ``Text`` or through a ``TextArea``, never as markup, so a prompt full of
``[bold]`` or ``[/]`` shows literally and cannot break rendering.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Input,
    Select,
    TabbedContent,
    TabPane,
    TextArea,
)

from ...errors import TPromptError
from ...graph.topology import node_of, successors
from ...metric_specs import heading, metric_columns
from ...stores.log import gc_paused
from ...stores.summary import test_rows, test_title, undefined_note
from ..call_view import AnswerIndex, Examples, call_row, call_text
from ..data import (
    EVENT_STYLE,
    Frontiers,
    Judgements,
    RunFollower,
    best_prompts,
    describe,
    fmt,
    graph_text,
    judgement_text,
    metric_names,
    one_line,
    payload_json,
    prompt_set,
    prompt_set_box,
    prompt_set_line,
    score_curve,
    spend_text,
    state_digest,
    where,
)
from ..transcripts import Transcripts, system_prompt
from ..widgets import LiteralInput, LiteralStatic, LiteralText, LiteralTitles, Row, ScorePlot, SortedTable, literal

EVENT_COLUMNS = ("seq", "where", "event", "summary")
CALL_COLUMNS = ("#", "agent", "step", "model", "kind", "tokens in", "tokens out", "latency s", "cache")
BEST_COLUMNS = ("rank", "prompt", "step", "objective", "text")
#: what the Scores tab says where the held-out test table goes while the run has none
NOT_TESTED = ("no held-out test result yet: the original and best prompts are tested on the target task's "
              "test split when the last stage ends")


#: the run view's tabs by key (the digit that switches to each) and their names, as the tab and the footer show them
TABS: dict[str, tuple[str, str]] = {
    "1": ("tab-timeline", "Timeline"),
    "2": ("tab-scores", "Scores"),
    "3": ("tab-candidates", "Candidates"),
    "4": ("tab-transcripts", "Transcripts"),
    "5": ("tab-graph", "Graph"),
}
TAB_KEYS = {key: tab for key, (tab, _) in TABS.items()}
#: the widget each tab focuses when shown (each tab holds one, so the focus never stays in a hidden tab)
TAB_FOCUS = {"tab-timeline": "#events", "tab-scores": "#best", "tab-candidates": "#candidates",
             "tab-transcripts": "#calls", "tab-graph": "#graph-box"}


class RunScreen(LiteralTitles, Screen[None]):
    """Everything about one run; follows it live while it grows."""

    BINDINGS = [
        Binding("escape", "back", "Runs"),
        *(Binding(key, f"tab({tab!r})", name) for key, (tab, name) in TABS.items()),
        Binding("slash", "search", "Search"),
        Binding("r", "resume", "Run/resume"),
        Binding("p", "pause", "Pause"),
        Binding("f", "fork", "Fork"),
        Binding("v", "review", "Review", show=False),
        Binding("m", "mark", "Mark"),
        Binding("d", "diff", "Diff"),
    ]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.follower: RunFollower | None = None
        self.transcripts: Transcripts | None = None
        self.marked: tuple[str, str] | None = None  # (label, text) of the prompt marked for a diff
        self._metrics: list[str] = []
        self.judgements = Judgements()
        self.answers = AnswerIndex()
        self.examples = Examples()
        self._candidates_shown = 0
        self.error: str | None = None
        self._calls_index: dict[str, Any] = {}
        self.frontiers = Frontiers()

    # -- layout ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield LiteralStatic(id="run-head")
        with TabbedContent(initial="tab-timeline", id="run-tabs"):
            with TabPane(TABS["1"][1], id="tab-timeline"):
                with Horizontal():
                    yield SortedTable(id="events")
                    with Vertical(id="event-side"):
                        yield LiteralStatic(id="replay-title")
                        yield LiteralStatic(id="replay")
                        yield TextArea(id="payload", read_only=True, soft_wrap=True, show_cursor=False)
            with TabPane(TABS["2"][1], id="tab-scores"):
                yield LiteralStatic(LiteralText("objective per step", style="bold"), classes="pane-title")
                yield ScorePlot(id="plot")
                yield LiteralStatic(LiteralText("best prompts per stage", style="bold"), classes="pane-title")
                yield SortedTable(id="best")
                yield LiteralStatic(id="tested-title", classes="pane-title")
                yield SortedTable(id="tested")
                yield LiteralStatic(id="tested-note")
                yield LiteralStatic(id="spend")
            with TabPane(TABS["3"][1], id="tab-candidates"):
                yield SortedTable(id="candidates")
                with VerticalScroll(id="candidate-box"):
                    yield LiteralStatic(id="candidate-text")
            with TabPane(TABS["4"][1], id="tab-transcripts"):
                with Horizontal(id="call-filters"):
                    yield Select([], prompt="agent", id="call-agent")
                    yield Select([], prompt="step", id="call-step")
                    yield LiteralInput(placeholder="search messages and responses", id="call-search")
                yield SortedTable(id="calls")
                with VerticalScroll(id="call-box"):
                    yield LiteralStatic(id="call-detail")
            with TabPane(TABS["5"][1], id="tab-graph"):
                yield LiteralStatic(id="graph-title", classes="pane-title")
                # Focusable, so the Graph tab holds the focus: a focused widget left in a hidden tab
                # pulled the tabs back to its own (5 did nothing from Scores, Candidates, Transcripts).
                with VerticalScroll(id="graph-box"):
                    yield LiteralStatic(id="graph-view")
        yield Footer(compact=True)  # every key of the run view fits on 140 columns

    def on_mount(self) -> None:
        app: Any = self.app
        app.no_blink(self)
        self.follower = RunFollower(app.store, self.run_id)
        self.run_id = self.follower.run_id
        self.transcripts = Transcripts(app.store, self.run_id)
        self.query_one("#events", SortedTable).set_columns(EVENT_COLUMNS)
        self.query_one("#best", SortedTable).set_columns(BEST_COLUMNS)
        self.query_one("#calls", SortedTable).set_columns(CALL_COLUMNS)
        self.poll(initial=True)
        self.query_one("#events", SortedTable).focus()
        self.set_interval(app.poll_interval, self.poll)

    # -- live data ------------------------------------------------------------------------

    def poll(self, initial: bool = False) -> None:
        """Fold the events appended since the last poll and show what changed.

        Tables grow by appending the new rows, so following a long run does
        not redraw its whole history every poll.
        """
        assert self.follower is not None and self.transcripts is not None
        fresh = self.follower.poll()
        self.judgements.add(fresh)
        self.answers.add(fresh)
        try:
            new_calls = self.transcripts.refresh()
        except TPromptError as exc:  # e.g. the file became unreadable
            new_calls = []
            self.follower.error = self.follower.error or str(exc)
        # A damaged event or an unreadable file: show what was read, say why it stops there.
        if self.follower.error != self.error:
            self.error = self.follower.error
            if self.error:
                self.notify(self.error, severity="error", markup=False)
        if fresh or initial:
            with gc_paused():  # a long run's rows are many small objects and make no cycles
                self._show_events(fresh, follow_tail=not initial)
                self._show_scores()
                self._show_candidates()
        if new_calls or initial:
            self._show_calls_filters()
            self._show_calls(new_calls if not initial else None)
            self._show_spend()
        self._show_head()

    def _show_head(self) -> None:
        assert self.follower is not None
        app: Any = self.app
        s = self.follower.state
        head = LiteralText()
        head.append(self.run_id, style="bold")
        head.append(f"  {s.status}", style="bold yellow" if s.status == "running" else "")
        if s.name:
            head.append("  ")
            head.append(s.name)
        head.append(f"  {', '.join(s.source_tasks) or '-'} -> {s.target_task or '-'}")
        cfg = s.config
        if cfg is not None:
            head.append(f"  models {cfg.proposer} / {cfg.scorer}", style="dim")
        head.append(f"  {s.last_seq} events")
        if s.parent_run_id:
            head.append(f"  fork of {s.parent_run_id}@{s.parent_seq}", style="magenta")
        line = app.progress.get(self.run_id)
        if s.awaiting_review():
            head.append(f"\npaused for a review of {s.stage} step {s.in_flight}'s candidates: press v",
                        style="bold yellow")
        if self.error:
            head.append("\n")
            head.append(self.error, style="bold red")
        elif line:
            head.append("\n")
            head.append(line, style="italic")
        elif app.is_running_here(self.run_id):
            head.append("\nrunning here", style="italic")
        self.query_one("#run-head", LiteralStatic).update(head)

    def _event_row(self, se: Any) -> Row:
        return Row(
            key=str(se.seq),
            values=lambda: (se.seq, where(se), se.type, describe(se)),
            cells=lambda: (
                LiteralText(str(se.seq), justify="right", style="dim" if se.run_id != self.run_id else ""),
                LiteralText(where(se)),
                LiteralText(se.type, style=EVENT_STYLE[type(se.event)]),
                LiteralText(describe(se)),
            ),
        )

    def _show_events(self, fresh: list[Any], *, follow_tail: bool) -> None:
        table = self.query_one("#events", SortedTable)
        at_tail = table.at_end()
        table.extend([self._event_row(se) for se in fresh])
        if follow_tail and at_tail and table.row_count and table.sort_column is None:
            table.move_to_end()
        self._show_event_detail()

    def _selected_seq(self) -> int | None:
        key = self.query_one("#events", SortedTable).current_key()
        return int(key) if key else None

    def _show_event_detail(self) -> None:
        assert self.follower is not None
        seq = self._selected_seq()
        if seq is None:
            return
        se = next((e for e in self.follower.events if e.seq == seq), None)
        if se is None:
            return
        inherited = f" (inherited from {se.run_id})" if se.run_id != self.run_id else ""
        self.query_one("#replay-title", LiteralStatic).update(
            LiteralText(f"state after seq {seq}{inherited}", style="bold")
        )
        self.query_one("#replay", LiteralStatic).update(LiteralText(state_digest(self.follower.state_at(seq))))
        area = self.query_one("#payload", TextArea)
        text = payload_json(se)
        if area.text != text:
            area.load_text(text)
        self._show_graph(se)

    def _show_graph(self, se: Any) -> None:
        """The state machine with the node that wrote the selected event (the latest, live) highlighted."""
        assert self.follower is not None
        config = self.follower.state.config
        transfer = config.transfer if config is not None else True
        node = node_of(se, transfer=transfer)
        latest = self.follower.events[-1].seq if self.follower.events else None
        live = self.follower.state.status == "running" and se.seq == latest
        title = f"{'Transfer-Prompting' if transfer else 'target-only (OPRO)'} graph: seq {se.seq} ({se.type})"
        title += " was written by the highlighted node" if node else " is the driver's (resume, pause, failure)"
        if live:
            title += "; it is the latest event of this running run"
        self.query_one("#graph-title", LiteralStatic).update(LiteralText(title, style="bold"))
        self.query_one("#graph-view", LiteralStatic).update(
            graph_text(successors(transfer, judge=config is not None and config.judge is not None), node, f"seq {se.seq}" if node else ""))

    def _show_scores(self) -> None:
        assert self.follower is not None
        state = self.follower.state
        self.query_one(ScorePlot).set_curves([score_curve(state, "source"), score_curve(state, "target")])
        rows = []
        for label, sp in best_prompts(state):
            found = prompt_set(self.follower.events, sp.prompt_id)
            rows.append(
                Row(
                    key=f"{label}|{sp.prompt_id}",
                    values=(label, sp.prompt_id, sp.step, sp.objective, sp.text),
                    cells=(LiteralText(label), LiteralText(sp.prompt_id), LiteralText(str(sp.step)), LiteralText(fmt(sp.objective)),
                           LiteralText(prompt_set_line(found) if found is not None else one_line(sp.text, 200))),
                )
            )
        self.query_one("#best", SortedTable).set_rows(rows)
        self._show_tested()

    def _show_tested(self) -> None:
        """The held-out test table (original, best source, best target), as ``tprompt show`` prints it."""
        assert self.follower is not None
        state = self.follower.state
        rows = test_rows(state)
        table = self.query_one("#tested", SortedTable)
        table.display = bool(rows)
        note = self.query_one("#tested-note", LiteralStatic)
        if not rows:
            self.query_one("#tested-title", LiteralStatic).update(LiteralText("held-out test", style="bold"))
            note.update(LiteralText(NOT_TESTED, style="dim italic"))
            return
        self.query_one("#tested-title", LiteralStatic).update(LiteralText(test_title(state), style="bold"))
        names = metric_columns(r.metrics for r in rows)
        table.set_columns(["prompt", *map(heading, names), "objective"])
        table.set_rows([Row(key=r.label, values=(r.label, *(r.metrics.get(m) for m in names), r.objective),
                            cells=(LiteralText(r.label), *(LiteralText(fmt(r.metrics.get(m)), justify="right") for m in names),
                                   LiteralText(fmt(r.objective), justify="right", style="bold")))
                        for r in rows])
        caption = undefined_note(rows)
        note.update(LiteralText(caption or "", style="dim"))
        note.display = caption is not None

    def _show_spend(self) -> None:
        """Calls answered by a model, per agent and stage, with tokens and USD (as `tprompt show`)."""
        assert self.transcripts is not None
        spend = self.transcripts.store.spend([self.run_id])
        self.query_one("#spend", LiteralStatic).update(spend_text(spend))

    def _show_candidates(self) -> None:
        assert self.follower is not None
        state = self.follower.state
        metrics = metric_names(state.scores)
        table = self.query_one("#candidates", SortedTable)
        if metrics != self._metrics or not table.columns:
            # New metric columns: rebuild the table from scratch.
            self._metrics = metrics
            table.set_columns(["stage", "step", "prompt", "task", "rung", "n", *map(heading, metrics), "objective", "text"])
            self._candidates_shown = 0
            table.set_rows([])
        table.extend([self._candidate_row(s, metrics) for s in state.scores[self._candidates_shown :]])
        self._candidates_shown = len(state.scores)
        self._show_candidate_text()

    @staticmethod
    def _candidate_row(s: Any, metrics: list[str]) -> Row:
        values = (s.stage, s.step, s.prompt_id, s.task, s.rung, s.n_examples,
                  *(s.metrics.get(m) for m in metrics), s.objective, s.text)
        return Row(key=str(s.seq), values=values, cells=lambda: (
            LiteralText(s.stage), LiteralText(str(s.step)), LiteralText(s.prompt_id), LiteralText(s.task),
            LiteralText(str(s.rung) + ("x" if s.eliminated else "")), LiteralText(str(s.n_examples)),
            *(LiteralText(fmt(s.metrics.get(m)), justify="right") for m in metrics),
            LiteralText(fmt(s.objective), justify="right", style="bold"),
            LiteralText(one_line(s.text, 60)),
        ))

    def _candidate_under_cursor(self) -> Any:
        assert self.follower is not None
        key = self.query_one("#candidates", SortedTable).current_key()
        if key is None:
            return None
        return next((s for s in self.follower.state.scores if str(s.seq) == key), None)

    def _show_candidate_text(self) -> None:
        s = self._candidate_under_cursor()
        if s is None:
            return
        text = LiteralText()
        text.append(f"{s.prompt_id} ({s.stage} step {s.step}, {s.task})\n", style="bold")
        assert self.follower is not None
        found = prompt_set(self.follower.events, s.prompt_id)
        text.append(prompt_set_box(found) if found is not None else LiteralText(s.text))
        judged = self.judgements.of_candidate(s)
        if judged:
            text.append(f"\n\njudgements ({len(judged)}: per answer and criterion)", style="bold")
            text.append(judgement_text(judged))
        assert self.follower is not None
        text.append(self.frontiers.text(self.follower.events, self.follower.state, s.stage, s.prompt_id))
        self.query_one("#candidate-text", LiteralStatic).update(text)

    # -- transcripts ------------------------------------------------------------------------

    def _show_calls_filters(self) -> None:
        assert self.transcripts is not None
        for sel_id, values in (("#call-agent", self.transcripts.agents()), ("#call-step", self.transcripts.steps())):
            select = self.query_one(sel_id, Select)
            current = select.value
            options = [(literal(v), v) for v in values]
            if [v for _, v in options] != getattr(select, "_tp_values", None):
                select._tp_values = [v for _, v in options]  # type: ignore[attr-defined]
                with select.prevent(Select.Changed):
                    select.set_options(options)
                    if current in values:
                        select.value = current

    def _call_filter(self) -> dict[str, Any]:
        agent = self.query_one("#call-agent", Select).value
        step = self.query_one("#call-step", Select).value
        return {
            "agent": agent if isinstance(agent, str) else None,
            "step": step if isinstance(step, str) else None,
            "search": self.query_one("#call-search", Input).value,
        }

    def _show_calls(self, fresh: list[Any] | None = None) -> None:
        """Show the calls matching the filters: all of them, or only append the ``fresh`` ones."""
        assert self.transcripts is not None
        table = self.query_one("#calls", SortedTable)
        if fresh is None:
            self._calls_index = {}
            matching = self.transcripts.filtered(**self._call_filter())
        else:
            matching = self.transcripts.filtered(**self._call_filter(), rows=fresh)
        rows = []
        for r in matching:
            self._calls_index[r.call_id] = r
            rows.append(call_row(len(self._calls_index), r))
        if fresh is None:
            table.set_rows(rows)
        else:
            table.extend(rows)
        self._show_call_detail()

    def _call_under_cursor(self) -> Any:
        key = self.query_one("#calls", SortedTable).current_key()
        return self._calls_index.get(key) if key else None

    def _show_call_detail(self) -> None:
        assert self.transcripts is not None
        row = self._call_under_cursor()
        box = self.query_one("#call-detail", LiteralStatic)
        if row is None:
            box.update(LiteralText("no calls" if not self.transcripts.rows else "no call matches the filter", style="dim"))
            return
        text = call_text(row, self.transcripts.detail(row), needle=self._call_filter()["search"].strip(),
                         answers=self.answers, examples=self.examples, judged=self.judgements.of_call(row.call_id))
        box.update(text)

    # -- events from widgets ------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        table_id = event.data_table.id
        if table_id == "events":
            self._show_event_detail()
        elif table_id == "candidates":
            self._show_candidate_text()
        elif table_id == "calls":
            self._show_call_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()

    def on_select_changed(self, event: Select.Changed) -> None:
        self._show_calls()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "call-search":
            self._show_calls()

    # -- actions ------------------------------------------------------------------------------------

    def action_back(self) -> None:
        if self.focused is not None and self.focused.id == "call-search":
            self.query_one("#calls", SortedTable).focus()  # Esc leaves the search box, not the run
            return
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        self.query_one(TAB_FOCUS[tab]).focus()

    def action_search(self) -> None:
        """``/``: the Transcripts tab, its search box focused."""
        self.action_tab("tab-transcripts")
        self.query_one("#call-search", Input).focus()

    def action_resume(self) -> None:
        app: Any = self.app
        if self.follower is not None and self.follower.state.awaiting_review():
            self.notify("this run waits for a review of its candidates: press v", markup=False)
            return
        app.resume_run(self.run_id)

    def action_pause(self) -> None:
        app: Any = self.app
        app.pause_run(self.run_id)

    def _prompt_under_cursor(self) -> tuple[str, str] | None:
        """(label, text) of the prompt the active tab points at, for mark/diff and fork."""
        assert self.follower is not None
        tab = self.query_one(TabbedContent).active
        if tab == "tab-candidates":
            s = self._candidate_under_cursor()
            return (f"{s.prompt_id} ({s.stage} {s.step})", s.text) if s else None
        if tab == "tab-scores":
            key = self.query_one("#best", SortedTable).current_key()
            for label, sp in best_prompts(self.follower.state):
                if key == f"{label}|{sp.prompt_id}":
                    return (f"{sp.prompt_id} ({label})", sp.text)
            return None
        if tab == "tab-transcripts":
            row = self._call_under_cursor()
            if row is None or self.transcripts is None:
                return None
            return (f"call {row.call_id[:10]} ({row.agent})", system_prompt(self.transcripts.detail(row)))
        return None

    def action_mark(self) -> None:
        picked = self._prompt_under_cursor()
        if picked is None:
            self.notify("mark a prompt in Scores, Candidates or Transcripts", severity="warning")
            return
        self.marked = picked
        self.notify(f"marked {picked[0]}; move to another prompt and press d to diff", markup=False)

    def action_diff(self) -> None:
        from .modals import DiffScreen

        picked = self._prompt_under_cursor()
        if self.marked is None or picked is None:
            self.notify("press m on one prompt, then d on another", severity="warning")
            return
        self.app.push_screen(DiffScreen(self.marked, picked))

    def action_review(self) -> None:
        """Open the review of the candidates this run paused on (``run --review``)."""
        from .modals import ReviewDecision, ReviewScreen

        assert self.follower is not None
        state = self.follower.state
        if not state.awaiting_review():
            self.notify("this run is not waiting for a review (start a run with --review)", markup=False)
            return

        def chosen(decision: ReviewDecision | None) -> None:
            if decision is not None:
                app: Any = self.app
                app.review(self.run_id, decision)

        self.app.push_screen(
            ReviewScreen(run_id=self.run_id, stage=state.stage or "", step=state.in_flight or 0,
                         candidates=[(c.prompt_id, c.text) for c in state.pending]),
            chosen,
        )

    def action_fork(self) -> None:
        from .modals import ForkRequest, ForkScreen

        assert self.follower is not None
        state = self.follower.state
        sources = [(h.prompt_id, h.objective, h.text) for h in reversed(state.history("source"))]
        preselect = None
        picked = self._prompt_under_cursor()
        if picked is not None:
            preselect = next((pid for pid, _, text in sources if text == picked[1]), None)
        seq = self._selected_seq() or state.last_seq

        def chosen(req: ForkRequest | None) -> None:
            if req is None:
                return
            app: Any = self.app
            app.fork(
                self.run_id,
                at_seq=req.at_seq,
                from_prompt_id=req.from_prompt_id,
                target_task=req.target_task,
                start=req.start,
            )

        self.app.push_screen(
            ForkScreen(
                run_id=self.run_id,
                seq=seq,
                sources=sources,
                target_task=state.target_task or "",
                preselect=preselect,
                source_done="source" in state.stages_completed,
            ),
            chosen,
        )

