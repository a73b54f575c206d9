"""The CRM's Redis key layout (ARCHITECTURE.md, "Redis layout"); every CRM reader and writer goes through here.

The server-side scripts in :mod:`crm._lua` build the same names from the prefix; a test checks that both agree.

>>> k = CrmKeys("pulse:")
>>> k.case("C-twitter:1"), k.cases_open, k.agent("ann"), k.agents_load
('pulse:case:C-twitter:1', 'pulse:cases:open', 'pulse:agent:ann', 'pulse:agents:load')
>>> k.customer("c42"), k.identity("twitter", "bob"), k.churn
('pulse:customer:c42', 'pulse:identity:twitter:bob', 'pulse:churn')
>>> k.outbox("twitter")
'pulse:outbox:twitter'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KEEP_LINKS_SECONDS", "CrmKeys"]

#: How long thread links (mention or reply -> case) and outbox sent-once marks are kept (event time behind the
#: CRM's watermark): 180 days. The Lua scripts (crm._lua, ``KEEP_S``) use the same number.
KEEP_LINKS_SECONDS = 180 * 86400


@dataclass(frozen=True, slots=True)
class CrmKeys:
    """Names of every key the CRM writes, under one prefix.

    >>> CrmKeys("t:").queue("pr")
    't:queue:pr'
    """

    prefix: str = "pulse:"

    # -- customers and identity ------------------------------------------------------------
    def customer(self, customer_id: str) -> str:
        """Hash: CRM fields, counters, churn risk, influence; ``kind`` is ``customer`` or ``prospect``."""
        return f"{self.prefix}customer:{customer_id}"

    def customer_handles(self, customer_id: str) -> str:
        """Set of ``channel:handle`` linked to the customer."""
        return f"{self.prefix}customer:{customer_id}:handles"

    def customer_mentions(self, customer_id: str) -> str:
        """Sorted set of the customer's recent mention ids, score = event time (ms)."""
        return f"{self.prefix}customer:{customer_id}:mentions"

    def customer_mention_data(self, customer_id: str) -> str:
        """Hash mention id -> JSON summary (channel, text, sentiment, ...) of the recent mentions."""
        return f"{self.prefix}customer:{customer_id}:mdata"

    def customer_cases(self, customer_id: str) -> str:
        """Sorted set of the customer's case ids, score = opened at (ms)."""
        return f"{self.prefix}customer:{customer_id}:cases"

    def customer_tags(self, customer_id: str) -> str:
        """Set of tags rules put on the customer."""
        return f"{self.prefix}customer:{customer_id}:tags"

    def customer_merged(self, customer_id: str) -> str:
        """Set of prospect ids merged into the customer."""
        return f"{self.prefix}customer:{customer_id}:merged"

    @property
    def customers(self) -> str:
        """Set of imported customer ids."""
        return f"{self.prefix}customers"

    @property
    def prospects(self) -> str:
        """Sorted set of prospect ids, score = their newest mention (ms): a prospect silent for
        ``prospect_retention_days`` behind :attr:`watermark` is forgotten (its next mention starts a new profile)."""
        return f"{self.prefix}prospects"

    def identity(self, channel: str, handle: str) -> str:
        """String: the customer (or prospect) id that owns ``handle`` on ``channel``."""
        return f"{self.prefix}identity:{channel}:{handle}"

    def link_code(self, code: str) -> str:
        """Hash of a value-exchange link code: customer, expiry, who used it."""
        return f"{self.prefix}linkcode:{code}"

    @property
    def churn(self) -> str:
        """Sorted set customer id -> latest churn risk."""
        return f"{self.prefix}churn"

    # -- cases --------------------------------------------------------------------------------
    def case(self, case_id: str) -> str:
        return f"{self.prefix}case:{case_id}"

    def case_events(self, case_id: str) -> str:
        """List of JSON transitions ``{"ts", "event", ...}`` in the order they happened."""
        return f"{self.prefix}case:{case_id}:events"

    def case_replies(self, case_id: str) -> str:
        """Set of brand reply ids already counted on the case (replies are idempotent)."""
        return f"{self.prefix}case:{case_id}:replies"

    def case_tags(self, case_id: str) -> str:
        return f"{self.prefix}case:{case_id}:tags"

    @property
    def cases_open(self) -> str:
        """Sorted set of unresolved cases by response deadline (ms; ``inf`` when nothing is awaited)."""
        return f"{self.prefix}cases:open"

    @property
    def cases_sla(self) -> str:
        """Sorted set of SLA timers: case id -> next time (ms) an ``sla_breach`` alert may fire."""
        return f"{self.prefix}cases:sla"

    @property
    def cases_replied(self) -> str:
        """Sorted set of cases awaiting the customer after a reply, by reply time (ms): auto-resolve timers."""
        return f"{self.prefix}cases:replied"

    @property
    def cases_active(self) -> str:
        """Sorted set of unresolved cases by last activity (opened, customer mention, reply; ms): one without
        activity for ``stale_case_days`` behind :attr:`watermark` expires (status ``expired``)."""
        return f"{self.prefix}cases:active"

    @property
    def cases_all(self) -> str:
        """Sorted set of every case id by opened at (ms)."""
        return f"{self.prefix}cases:all"

    @property
    def cases_closed(self) -> str:
        """Sorted set of closed (resolved or expired) cases by closing time (ms): a case goes
        ``case_retention_days`` (event time) after it, behind :attr:`watermark`."""
        return f"{self.prefix}cases:closed"

    @property
    def watermark(self) -> str:
        """String: the CRM's newest processed mention time (ms, event time), what case retention follows."""
        return f"{self.prefix}crm:wm"

    @property
    def cases_stats(self) -> str:
        """Hash of lifecycle counters: opened, assigned, replied, resolved, reopened, sla_breaches, ..."""
        return f"{self.prefix}cases:stats"

    def thread(self, mention_id: str) -> str:
        """String: the case a mention (customer or brand reply) belongs to; kept :data:`KEEP_LINKS_SECONDS` of
        event time behind :attr:`watermark` (a follow-up to a message that old starts a new case)."""
        return f"{self.prefix}thread:{mention_id}"

    @property
    def threads_at(self) -> str:
        """Sorted set ``mention or reply id -> event ms`` of :meth:`thread` links, what their retention walks."""
        return f"{self.prefix}threadt"

    def early_reply(self, mention_id: str) -> str:
        """A brand reply that arrived before the mention it answers (applied when the case opens); held
        ``EARLY_REPLY_TTL_S`` of event time (:attr:`early_at`)."""
        return f"{self.prefix}crm:early:{mention_id}"

    @property
    def early_at(self) -> str:
        """Sorted set ``mention id -> reply event ms`` of :meth:`early_reply`, what their retention walks."""
        return f"{self.prefix}crm:earlyt"

    def tick(self, period_ms: int) -> str:
        """String: the timer tick of an event-time period (the mention that triggered it and the alerts it
        raised), so a replay or a retry returns them instead of ticking twice; expires like :meth:`processed`."""
        return f"{self.prefix}crm:tick:{period_ms}"

    @property
    def ticks_at(self) -> str:
        """Sorted set of the periods with a stored :meth:`tick` (score = the period), retired like
        :meth:`processed` marks with their :meth:`tick_scan`."""
        return f"{self.prefix}crm:tickt"

    @property
    def tick_last(self) -> str:
        """String: the newest event-time period a timer tick ran for."""
        return f"{self.prefix}crm:tick:last"

    def tick_scan(self, period_ms: int) -> str:
        """String: the SLA timers the tick of a period fired (JSON), so the scan fires each once even if
        the tick is run again after a crash or a lost connection."""
        return f"{self.prefix}crm:tickscan:{period_ms}"

    def processed(self, mention_id: str) -> str:
        """String: the stored outcome of processing a mention, so replays return it instead of redoing it;
        kept ``processed_ttl_seconds`` of event time (:attr:`processed_at`)."""
        return f"{self.prefix}crm:done:{mention_id}"

    @property
    def processed_at(self) -> str:
        """Sorted set ``mention id -> event ms`` of :meth:`processed`, what their retention walks."""
        return f"{self.prefix}crm:donet"

    # -- queues and agents ----------------------------------------------------------------------
    def queue(self, name: str) -> str:
        """Sorted set of cases waiting for an agent in a department queue, score = opened at (ms)."""
        return f"{self.prefix}queue:{name}"

    @property
    def queues(self) -> str:
        """Set of queue names that ever held a case."""
        return f"{self.prefix}queues"

    def agent(self, agent_id: str) -> str:
        """Hash: name, status, capacity, load, departments, channels, languages, seq."""
        return f"{self.prefix}agent:{agent_id}"

    def agent_cases(self, agent_id: str) -> str:
        """Set of the unresolved cases assigned to the agent."""
        return f"{self.prefix}agent:{agent_id}:cases"

    @property
    def agents_load(self) -> str:
        """Sorted set agent id -> number of unresolved cases assigned."""
        return f"{self.prefix}agents:load"

    @property
    def agents_all(self) -> str:
        return f"{self.prefix}agents:all"

    @property
    def agents_online(self) -> str:
        return f"{self.prefix}agents:online"

    def agents_avail(self, department: str) -> str:
        """Per department (``*`` = agents serving every queue): online agents with room (load < capacity),
        score = load."""
        return f"{self.prefix}agents:avail:{department}"

    def agents_rr(self, department: str) -> str:
        """Per department: online agents with room, score = last-assignment stamp (round-robin order)."""
        return f"{self.prefix}agents:rr:{department}"

    @property
    def agents_seq(self) -> str:
        """Counter stamped on an agent at each assignment (round robin picks the oldest stamp)."""
        return f"{self.prefix}agents:seq"

    # -- tasks, rules, outbox ---------------------------------------------------------------------
    def task(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}"

    @property
    def tasks_open(self) -> str:
        """Sorted set of open task ids by due time (ms); a task goes ``task_retention_days`` (event time) after
        it is due, behind :attr:`watermark`."""
        return f"{self.prefix}tasks:open"

    @property
    def rules_stats(self) -> str:
        """Hash ``{rule}|hits`` and ``{rule}|{outcome}`` -> count."""
        return f"{self.prefix}rules:stats"

    def rules_pending(self, customer_id: str) -> str:
        """Hash rule -> hit time of rule hits whose outcome (the customer's next mention) is still open."""
        return f"{self.prefix}rules:pending:{customer_id}"

    @property
    def rules_hits(self) -> str:
        """Stream of rule hits (rule, mention, customer) for audit."""
        return f"{self.prefix}rules:hits"

    def outbox(self, channel: str) -> str:
        """Stream of outbound messages on ``channel`` (the outbox contract of ARCHITECTURE.md; entries are
        encoded by the injected :class:`crm.outbox.OutboxEncoder`), capped near its ``maxlen``."""
        return f"{self.prefix}outbox:{channel}"

    def outbox_sent(self, reply_id: str) -> str:
        """String, present once ``reply_id`` was written to an outbox (writes are idempotent by reply id); the
        CRM's marks go :data:`KEEP_LINKS_SECONDS` of event time after the write (:attr:`outbox_sent_at`)."""
        return f"{self.prefix}outbox:sent:{reply_id}"

    @property
    def outbox_sent_at(self) -> str:
        """Sorted set ``reply id -> event ms`` of the CRM's :meth:`outbox_sent` marks, what their retention walks."""
        return f"{self.prefix}outbox:sentt"

    @property
    def webhooks(self) -> str:
        """The outbox of rule webhooks (channel ``webhook``): messages of kind ``webhook`` with their ``url``."""
        return self.outbox("webhook")

    # -- knowledge base ------------------------------------------------------------------------------
    def kb_article(self, article_id: str) -> str:
        return f"{self.prefix}kb:article:{article_id}"

    @property
    def kb_articles(self) -> str:
        return f"{self.prefix}kb:articles"

    @property
    def kb_version(self) -> str:
        """Counter bumped by every import, so processes rebuild their index."""
        return f"{self.prefix}kb:version"

    @property
    def kb_feedback(self) -> str:
        """Hash ``{term}|{article}`` -> times an agent chose the article for a case containing the term."""
        return f"{self.prefix}kb:feedback"

    @property
    def kb_feedback_version(self) -> str:
        return f"{self.prefix}kb:fbversion"
