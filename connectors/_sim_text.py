"""Vocabulary and templates of the simulated world (private to :mod:`connectors.simulator`).

Each post category carries its hidden truth (intent, sentiment, department); the templates use slots
(``{at}``, ``{thing}``, ``{problem}``, …) filled from an industry's vocabulary, and the author's style
(casual slang, shouting, gamer leetspeak) is applied afterwards.

>>> CATEGORIES["svc_q_neg"]
('query', 'negative', 'service')
>>> gamer("the servers suck and hackers owned me", 0.0)
'teh servers suxx0r and hax0rs pwn3d me gg'
"""

from __future__ import annotations

__all__ = [
    "BRAND_REPLIES",
    "BURST_TEMPLATES",
    "CATEGORIES",
    "CHANNEL_MIX",
    "FOLLOWUPS",
    "INCIDENT_TEMPLATES",
    "INDUSTRIES",
    "SLANG_TEMPLATES",
    "TEMPLATES",
    "casual",
    "gamer",
    "shouty",
]

#: category -> (truth_intent, truth_sentiment, truth_department)
CATEGORIES: dict[str, tuple[str, str, str]] = {
    "svc_q_neg": ("query", "negative", "service"),
    "svc_q_neu": ("query", "neutral", "service"),
    "svc_c_neg": ("comment", "negative", "service"),
    "svc_c_pos": ("comment", "positive", "service"),
    "sales_q": ("query", "neutral", "sales"),
    "sales_q_pos": ("query", "positive", "sales"),
    "sales_c_pos": ("comment", "positive", "sales"),
    "mkt_c_pos": ("comment", "positive", "marketing"),
    "mkt_c_neu": ("comment", "neutral", "marketing"),
    "mkt_c_neg": ("comment", "negative", "marketing"),
    "pr_c_neu": ("comment", "neutral", "pr"),
    "pr_c_neg": ("comment", "negative", "pr"),
    "pr_c_pos": ("comment", "positive", "pr"),
    "chatter": ("comment", "neutral", "marketing"),
}

#: channel -> category weights (what people post where)
CHANNEL_MIX: dict[str, dict[str, float]] = {
    "twitter": {
        "svc_q_neg": 15,
        "svc_q_neu": 11,
        "svc_c_neg": 14,
        "svc_c_pos": 6,
        "sales_q": 7,
        "sales_q_pos": 2,
        "sales_c_pos": 3,
        "mkt_c_pos": 8,
        "mkt_c_neu": 5,
        "mkt_c_neg": 2,
        "pr_c_neu": 4,
        "pr_c_neg": 3,
        "pr_c_pos": 2,
        "chatter": 18,
    },
    "facebook": {
        "svc_q_neg": 16,
        "svc_q_neu": 14,
        "svc_c_neg": 12,
        "svc_c_pos": 6,
        "sales_q": 9,
        "sales_q_pos": 3,
        "sales_c_pos": 3,
        "mkt_c_pos": 9,
        "mkt_c_neu": 5,
        "mkt_c_neg": 2,
        "pr_c_neu": 3,
        "pr_c_neg": 2,
        "pr_c_pos": 2,
        "chatter": 14,
    },
    "instagram": {
        "svc_q_neg": 6,
        "svc_q_neu": 6,
        "svc_c_neg": 7,
        "svc_c_pos": 8,
        "sales_q": 8,
        "sales_q_pos": 4,
        "sales_c_pos": 6,
        "mkt_c_pos": 18,
        "mkt_c_neu": 6,
        "mkt_c_neg": 2,
        "pr_c_neu": 2,
        "pr_c_neg": 1,
        "pr_c_pos": 2,
        "chatter": 24,
    },
    "linkedin": {
        "svc_q_neg": 2,
        "svc_q_neu": 3,
        "svc_c_neg": 3,
        "svc_c_pos": 3,
        "sales_q": 12,
        "sales_q_pos": 4,
        "sales_c_pos": 4,
        "mkt_c_pos": 14,
        "mkt_c_neu": 10,
        "mkt_c_neg": 2,
        "pr_c_neu": 20,
        "pr_c_neg": 6,
        "pr_c_pos": 12,
        "chatter": 5,
    },
    "review": {
        "svc_q_neg": 3,
        "svc_q_neu": 2,
        "svc_c_neg": 34,
        "svc_c_pos": 26,
        "sales_q": 2,
        "sales_q_pos": 1,
        "sales_c_pos": 14,
        "mkt_c_pos": 4,
        "mkt_c_neu": 3,
        "mkt_c_neg": 4,
        "pr_c_neu": 1,
        "pr_c_neg": 2,
        "pr_c_pos": 1,
        "chatter": 3,
    },
    "forum": {
        "svc_q_neg": 24,
        "svc_q_neu": 30,
        "svc_c_neg": 10,
        "svc_c_pos": 8,
        "sales_q": 8,
        "sales_q_pos": 3,
        "sales_c_pos": 2,
        "mkt_c_pos": 3,
        "mkt_c_neu": 2,
        "mkt_c_neg": 1,
        "pr_c_neu": 2,
        "pr_c_neg": 1,
        "pr_c_pos": 1,
        "chatter": 5,
    },
}

# Templates per category. Slots: {at} brand address (@handle / name / nothing), {brand} brand name,
# {thing} {problem} {action} (topic vocabulary), {product} {place} {feature} {news} {scandal} {good_news}
# {campaign} {duration} {ticket} {agent_name} (industry vocabulary and small generated values).
TEMPLATES: dict[str, tuple[str, ...]] = {
    "svc_q_neg": (
        "{at} my {thing} is not working since this morning, can you help?",
        "{at} {problem} again. what is going on??",
        "hey {at} {problem} for {duration} now. how do I fix this?",
        "{at} why is my {thing} still broken? ticket {ticket}",
        "{at} been on hold for {duration}, {problem}. can someone call me back please",
        "is anyone else having {problem} with {brand}? how long will this take",
        "{at} {problem} and your app just says try again later. please help",
        "{at} you charged me but {problem}. when will this be sorted?",
        "{at} seriously, {problem}. who do I talk to?",
        "{at} can you please explain why {problem}? 3rd time this week",
    ),
    "svc_q_neu": (
        "{at} how do I {action}?",
        "{at} quick question: can I use {feature} in {place}?",
        "{at} hi, what's the status of ticket {ticket}?",
        "does {brand} support {feature}? asking for a friend",
        "{at} how can I update my address on the account please",
        "{at} where can I find my {thing} details?",
        "{at} is there a way to {action} from the app?",
        "hi {at}, what are your opening hours this weekend?",
        "{at} do I need to do anything to {action}?",
    ),
    "svc_c_neg": (
        "{problem} again. {brand} is a joke",
        "worst customer service ever {at}, {problem} and nobody cares",
        "3rd time this month: {problem}. done with {brand}",
        "{at} {problem}. unacceptable.",
        "{brand} {thing} really sucks lately",
        "waited {duration} for {brand} support and got nothing. {problem}",
        "never again {brand}. {problem} and they just don't care",
        "so tired of {brand}. {problem} every single day",
    ),
    "svc_c_pos": (
        "thanks {at} for sorting my {thing} so quickly!",
        "shoutout to {agent_name} at {brand} support, {thing} fixed in {duration_short}",
        "{at} you guys rock, {thing} working again",
        "really impressed with {brand} customer service today",
        "credit where it's due, {brand} fixed my {thing} in {duration_short}. great job",
        "{brand} support was great, thank you {agent_name}",
    ),
    "sales_q": (
        "{at} how much is the {product}?",
        "{at} do you have any deals on the {product} for existing customers?",
        "thinking of switching to {brand}, is the {product} worth it?",
        "{at} can I upgrade to the {product} before my contract ends?",
        "{at} is the {product} available in {place}?",
        "{at} what's the difference between the {product} and the {product2}?",
        "anyone tried the {brand} {product}? what's the price like",
        "{at} any student discount on the {product}?",
    ),
    "sales_q_pos": (
        "{at} love the look of the new {product}! when can I get it?",
        "{at} the {product} looks great, how do I sign up?",
        "{at} excited about the {product}! can I preorder?",
    ),
    "sales_c_pos": (
        "just signed up for the {product} with {brand}, let's see",
        "finally got the {product}! so happy",
        "switched to {brand} last month and the {product} is great value",
        "the {product} from {brand} is honestly the best deal around",
    ),
    "mkt_c_pos": (
        "love the new {brand} ad",
        "that {campaign} campaign from {brand} is everywhere and I love it",
        "{brand} giveaway! entered, fingers crossed",
        "the {brand} {campaign} video made my day",
        "whoever runs the {brand} account deserves a raise, amazing",
        "{brand} rocks, best {campaign} ever",
    ),
    "mkt_c_neu": (
        "seen the new {brand} billboard in {place}",
        "{brand} newsletter again, they really like email",
        "the {campaign} thing from {brand} is back",
        "{brand} sponsoring the match tonight",
        "new {brand} logo spotted in {place}",
    ),
    "mkt_c_neg": (
        "{brand} ads every 5 minutes, stop it please",
        "that {campaign} ad from {brand} is so cringe",
        "unsubscribed from {brand} emails, way too many",
    ),
    "pr_c_neu": (
        "{brand} in the news today: {news}",
        "reading about {brand} and the {news}",
        "interesting interview with the {brand} CEO about the {news}",
        "{brand} announced the {news} this morning",
    ),
    "pr_c_neg": (
        "{brand} {scandal}? not a good look",
        "so {brand} is {scandal}. great.",
        "can't believe {brand} {scandal}, shameful",
    ),
    "pr_c_pos": (
        "good on {brand} for {good_news}",
        "proud to see {brand} {good_news}",
        "{brand} {good_news}, more companies should do this",
    ),
    "chatter": (
        "at the {brand} store in {place}, busy today",
        "my {thing} just made a weird noise lol",
        "{brand} vibes today",
        "watching the match with {brand} on in the background",
        "random thought: {brand} colours are nice",
        "waiting in {place}, {brand} everywhere",
        "me and my {thing}, name a better duo",
    ),
}

INCIDENT_TEMPLATES: tuple[str, ...] = (
    "{at} {t0}?? {t1} in {place} since {clock}",
    "is {brand} {t0}? {t1} for everyone here",
    "{t0} {t1} again {at} fix it",
    "{brand} {t0}. {t1}. great, just great",
    "{at} {t1} and {t2}. what is happening?",
    "anyone else? {brand} {t0}, {t2}",
    "{at} {t2} all morning, {t1}. any update?",
    "{t1}... {brand} {t0} AGAIN",
    "{at} when will the {t0} be fixed? {t1}",
)

BURST_TEMPLATES: tuple[str, ...] = (
    "wow {brand} {headline}!",
    "{brand} {headline}, about time",
    "did you see {brand} {headline}",
    "{brand} {headline}, nice one {at}",
    "so {brand} {headline}. interesting",
    "everyone talking about {brand} {headline}",
)

#: brand replies by what they answer
BRAND_REPLIES: dict[str, tuple[str, ...]] = {
    "query": (
        "Hi {first}, sorry to hear that. Can you DM us your account details so we can look into it? ^{agent}",
        "Hey {first}, thanks for reaching out! We've sent you a DM with the next steps. ^{agent}",
        "Hi there, we're on it. Could you tell us which {thing} this is about? ^{agent}",
        "Thanks for getting in touch, {first}. Please follow the link in our DM and we'll sort this. ^{agent}",
    ),
    "sales": (
        "Hi {first}! The {product} is on our website, we've DMed you today's offer. ^{agent}",
        "Great question! Yes, the {product} is available. Send us a DM and we'll set it up. ^{agent}",
    ),
    "negative": (
        "We're really sorry to hear this, {first}. Please DM us and we'll make it right. ^{agent}",
        "That's not the experience we want for you. Can you DM us so we can help? ^{agent}",
    ),
    "positive": (
        "Thanks so much for the kind words, {first}! ^{agent}",
        "Love to hear it! Enjoy ^{agent}",
    ),
    "neutral": (
        "Thanks for the mention, {first}! ^{agent}",
        "Appreciate you sharing this! ^{agent}",
    ),
    "incident": (
        "Hi {first}, we're aware of an issue affecting {thing} and engineers are working on it. Sorry! ^{agent}",
        "Sorry {first}, there's a known problem right now. Updates on our status page. ^{agent}",
    ),
}

#: A slang wave (the world's vocabulary drifts mid-run): (truth intent, truth sentiment) -> templates in words
#: the shipped models never saw in that sense ("ate", "sick", "cooked", "mid"); the labels stay the truth.
SLANG_TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("query", "negative"): (
        "{at} {thing} lowkey cooked fr, when does it come back?",
        "{at} my {thing} is so mid rn, how do i get it sorted?",
        "{at} {thing} fell off hard today, who do i dm?",
        "{at} bro the {thing} is giving nothing, any eta?",
    ),
    ("query", "neutral"): (
        "{at} real ones know how to {action}? asking fr",
        "{at} ngl where do i {action}, no cap",
    ),
    ("query", "positive"): (
        "{at} the {product} ate, how do i get one fr?",
        "{at} is the {product} still bussin at that price?",
    ),
    ("comment", "negative"): (
        "{brand} {thing} is mid af. ratio",
        "{brand} took an L today, {thing} cooked again",
        "{thing} from {brand} is down bad fr fr",
        "{brand} fell off. {thing} giving nothing",
    ),
    ("comment", "neutral"): (
        "{brand} {thing} lowkey just exists ngl",
        "saw the {brand} thing, it's whatever tbh",
    ),
    ("comment", "positive"): (
        "{brand} {thing} is sick, absolutely ate",
        "ngl {brand} {thing} slaps now, no cap",
        "{brand} support went crazy today, {thing} bussin",
        "the {product} is insane fr, {brand} cooked (in a good way)",
    ),
}

#: a customer's answer to a brand reply: (text, intent, sentiment)
FOLLOWUPS: tuple[tuple[str, str, str], ...] = (
    ("thanks, DM sent", "comment", "positive"),
    ("that worked, thank you!", "comment", "positive"),
    ("ok thanks, will try that", "comment", "neutral"),
    ("I already did that. still not fixed, what now?", "query", "negative"),
    ("sent a DM yesterday, no answer. anyone there?", "query", "negative"),
    ("nope, still broken", "comment", "negative"),
)

_COMMON_PLACES = ("London", "Leeds", "Manchester", "Bristol", "Glasgow", "Cardiff", "Dublin", "Birmingham")

#: industry -> vocabulary; ``topics`` maps a service topic to its things and problems
INDUSTRIES: dict[str, dict[str, object]] = {
    "telecom": {
        "topics": {
            "network": (
                ("signal", "mobile data", "5G", "4G"),
                (
                    "no signal at home",
                    "mobile data not working",
                    "calls keep dropping",
                    "5G keeps cutting out",
                ),
            ),
            "billing": (
                ("bill", "direct debit", "account"),
                ("I got charged twice", "my bill is wrong", "the direct debit failed", "I was overcharged"),
            ),
            "broadband": (
                ("broadband", "router", "wifi"),
                ("the broadband keeps cutting out", "the router keeps rebooting", "wifi is painfully slow"),
            ),
            "sim": (
                ("sim", "eSIM", "number"),
                ("my sim is not activating", "the eSIM won't install", "my number transfer is stuck"),
            ),
            "roaming": (
                ("roaming", "data abroad"),
                ("roaming doesn't work in Spain", "I got a huge roaming charge"),
            ),
        },
        "actions": (
            "change my tariff",
            "set up an eSIM",
            "turn on wifi calling",
            "check my data usage",
            "cancel my add-on",
            "port my number",
        ),
        "products": (
            "Unlimited 5G plan",
            "Family plan",
            "Fibre 500",
            "SIM-only deal",
            "Galaxy S24 bundle",
            "iPhone 15 bundle",
        ),
        "features": ("eSIM", "wifi calling", "5G", "data rollover", "roaming"),
        "places": _COMMON_PLACES,
        "campaigns": ("#StayConnected", "Nimbus Nights", "family bundle"),
        "news": ("5G rollout plan", "price rise next April", "network upgrade", "new CEO appointment"),
        "scandals": ("raising prices mid-contract", "selling customer data", "cutting support staff"),
        "good_news": (
            "freezing prices for pensioners",
            "giving free data to schools",
            "planting a tree per contract",
        ),
        "headlines": (
            "just won best network of the year",
            "launched free 5G upgrades",
            "is sponsoring the cup final",
            "announced a price freeze",
        ),
        "outages": (
            ("outage", "no signal", "network down"),
            ("mobile data", "not working", "outage"),
            ("broadband down", "no internet", "outage"),
        ),
    },
    "airline": {
        "topics": {
            "delay": (
                ("flight", "connection"),
                (
                    "my flight is delayed 4 hours",
                    "we've been sitting on the tarmac for ages",
                    "my connection was missed",
                ),
            ),
            "baggage": (
                ("bag", "suitcase", "luggage"),
                ("my bag is lost", "my suitcase arrived broken", "no sign of my luggage"),
            ),
            "booking": (
                ("booking", "seat", "ticket"),
                (
                    "my booking disappeared",
                    "my seat was changed without asking",
                    "the booking page keeps failing",
                ),
            ),
            "refund": (
                ("refund", "voucher"),
                ("my refund is still not here", "the voucher code doesn't work"),
            ),
            "checkin": (
                ("check-in", "boarding pass", "app"),
                ("online check-in keeps failing", "the app won't show my boarding pass"),
            ),
        },
        "actions": (
            "change my flight",
            "add a bag",
            "choose a seat",
            "get a refund",
            "add my loyalty number",
            "request assistance",
        ),
        "products": (
            "premium economy",
            "business class",
            "flex fare",
            "extra legroom seat",
            "lounge pass",
            "city break package",
        ),
        "features": ("the lounge", "priority boarding", "wifi on board", "seat selection"),
        "places": ("Heathrow", "Gatwick", "JFK", "Dublin", "Madrid", "Lisbon", "Berlin", "Manchester"),
        "campaigns": ("#FlySkyway", "summer sale", "miles double-up"),
        "news": ("new routes to Asia", "fleet renewal order", "pilot pay deal", "summer schedule"),
        "scandals": ("overbooking flights again", "dropping free snacks", "charging for hand luggage"),
        "good_news": ("flying medical supplies for free", "switching to cleaner fuel", "hiring 500 new crew"),
        "headlines": (
            "just announced a flash sale",
            "is flying to Tokyo from June",
            "won best short-haul airline",
            "revealed its new cabins",
        ),
        "outages": (
            ("check-in", "system down", "queues"),
            ("app", "crashing", "can't book"),
            ("website down", "booking error", "outage"),
        ),
    },
    "gaming": {
        "topics": {
            "servers": (
                ("servers", "connection", "lobby"),
                (
                    "the servers are lagging like crazy",
                    "I keep getting disconnected",
                    "the lobby is stuck loading",
                ),
            ),
            "account": (
                ("account", "login", "password"),
                ("I can't log in", "my account got hacked", "hackers owned my account"),
            ),
            "matchmaking": (
                ("matchmaking", "ranked", "queue"),
                ("matchmaking takes forever", "ranked is full of cheaters", "the queue never pops"),
            ),
            "patch": (
                ("patch", "update", "game"),
                (
                    "the new patch crashes on launch",
                    "the update broke my save",
                    "the game sucks since the patch",
                ),
            ),
            "purchases": (
                ("skins", "gems", "battle pass"),
                ("I lost my skins", "my gems vanished", "the battle pass didn't unlock"),
            ),
        },
        "actions": (
            "link my console account",
            "reset my password",
            "get a refund on gems",
            "change my username",
            "report a cheater",
            "transfer my save",
        ),
        "products": ("season pass", "deluxe edition", "1000 gems pack", "founders pack", "new DLC"),
        "features": ("cross-play", "controller support", "ray tracing", "cloud saves"),
        "places": ("EU West", "NA East", "the lobby", "Discord", "my stream"),
        "campaigns": ("#ForgeOn", "summer event", "esports cup"),
        "news": ("studio acquisition", "next season roadmap", "anti-cheat overhaul", "esports league"),
        "scandals": ("banning people for no reason", "adding pay-to-win items", "crunching the devs"),
        "good_news": ("donating to charity streams", "adding free maps", "fixing cheaters finally"),
        "headlines": (
            "just dropped a new season trailer",
            "announced a free weekend",
            "won game of the year",
            "revealed the new map",
        ),
        "outages": (
            ("servers down", "error 503", "can't connect"),
            ("login", "stuck in queue", "disconnected"),
            ("matchmaking down", "lobby error", "servers down"),
        ),
    },
}

_CASUAL_WORDS = {
    "please": "pls",
    "thanks": "thx",
    "thank": "ty",
    "you": "u",
    "your": "ur",
    "you're": "ur",
    "are": "r",
    "because": "bc",
    "really": "rly",
    "people": "ppl",
    "tonight": "2nite",
    "before": "b4",
    "great": "gr8",
    "what": "wat",
    "don't": "dont",
    "can't": "cant",
    "i'm": "im",
    "probably": "prob",
    "message": "msg",
    "okay": "ok",
    "tomorrow": "tmrw",
    "seriously": "srsly",
    "though": "tho",
    "with": "w/",
    "love": "luv",
    "why": "y",
    "see": "c",
    "for": "4",
    "to": "2",
}
_GAMER_WORDS = {
    "sucks": "suxx0rs",
    "suck": "suxx0r",
    "rocks": "r0xx0rs",
    "rock": "r0xx0r",
    "owned": "pwn3d",
    "hackers": "hax0rs",
    "hacker": "hax0r",
    "hacked": "h4x0red",
    "the": "teh",
    "noob": "n00b",
    "elite": "l33t",
    "lol": "lulz",
    "awesome": "awes0me",
    "you": "u",
    "please": "plz",
    "thanks": "thx",
    "cheaters": "ch34t3rz",
    "game": "g4me",
    "great": "gr8",
    "are": "r",
}
_ELONGATE = {
    "so": "sooooo",
    "please": "pleeeease",
    "why": "whyyyy",
    "no": "noooo",
    "what": "whaaat",
    "really": "reallyyyy",
    "love": "loooove",
    "hate": "haaaate",
    "help": "heeelp",
    "again": "agaaaain",
    "now": "nowwww",
    "ever": "everrrr",
}
_TAILS = {
    "negative": (" smh", " ffs", " 🙄", " ugh", " wtf", " 😡😡😡", " 🤬", " 😤"),
    "positive": (" lol", " tbh", " <3", " ty", " 😍", " 🙌", " 🔥", " ❤️"),
    "neutral": (" lol", " tbh", " idk", " imo", " 🤔", " 👀", " 😅"),
}
_GAMER_TAILS = (" gg", " rekt", " lmao", " kthxbye", " ffs", " gg ez", " 💀")


def _swap(text: str, table: dict[str, str], skip: tuple[str, ...]) -> str:
    words = text.split(" ")
    for i, w in enumerate(words):
        rep = table.get(w)
        if rep is None:
            core = w.rstrip("?!.,:;")
            if core is w or core not in table or core in skip:
                continue
            words[i] = table[core] + w[len(core) :]
        elif w not in skip:
            words[i] = rep
    return " ".join(words)


def casual(text: str, roll: float, sentiment: str = "neutral") -> str:
    """Lowercase texting style: abbreviations (pls, thx, u, smh) and a tail by sentiment.

    >>> casual("Thanks you are great, please fix it", 0.9)
    'thx u r gr8, pls fix it'
    """
    # "to"/"for" only sometimes: full replacement reads like a parody
    out = _swap(text.lower(), _CASUAL_WORDS, ("to", "for") if roll < 0.7 else ())
    if roll < 0.5:
        tails = _TAILS.get(sentiment, _TAILS["neutral"])
        out += tails[int(roll * 2 * len(tails)) % len(tails)]
    return out


def shouty(text: str, roll: float) -> str:
    """Elongations, capitals and extra punctuation.

    >>> shouty("why is this so slow again?", 0.2)
    'WHYYYY is this sooooo slow agaaaain???'
    """
    words = text.split(" ")
    first = True
    for i, w in enumerate(words):
        key = w.lower().rstrip("?!.,")
        if key in _ELONGATE:
            rep = _ELONGATE[key]
            tail = w[len(key) :]
            words[i] = (rep.upper() if first and roll < 0.5 else rep) + tail
            first = False
    out = " ".join(words)
    if out.endswith("?"):
        return out + ("??" if roll < 0.5 else "!?")
    return out + ("!!!" if roll < 0.6 else "!!")


def gamer(text: str, roll: float) -> str:
    """Gamer slang and leetspeak: pwn3d, hax0r, suxx0rs, r0xx0rs.

    >>> gamer("this game rocks", 0.9)
    'this g4me r0xx0rs'
    """
    out = _swap(text.lower(), _GAMER_WORDS, ())
    if roll < 0.4:
        out += _GAMER_TAILS[int(roll * 2.5 * len(_GAMER_TAILS)) % len(_GAMER_TAILS)]
    return out
