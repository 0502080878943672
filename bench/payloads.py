"""Realistic WhatsApp Cloud API webhook bodies for the benchmark, deterministic per seed.

Shapes follow Meta's webhook reference: the `whatsapp_business_account` envelope, `messages`
changes carrying customer messages and/or delivery statuses (with conversation and pricing
objects), template, account and other fields. The mix by request is about 70% status, 25%
message and 5% template / account / unrouted; bodies are 0.5 to 3 KB, some batched (several
statuses, changes or entries in one body) and some mixing messages and statuses, so that one
request yields records on two topics.

Each payload carries the event types it must produce, by the classification in docs/design.md
§4 with the default routing table. This module is the benchmark's own oracle for that
table: it deliberately does not import the relay.

    python bench/payloads.py --count 2000 --seed 1 --out payloads.jsonl   # + a summary on stderr
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import string
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVENT_TYPES = ("message", "status", "template", "account", "unrouted")

TEMPLATE_FIELDS = frozenset(
    {
        "message_template_status_update",
        "message_template_quality_update",
        "message_template_components_update",
        "template_category_update",
    }
)
ACCOUNT_FIELDS = frozenset(
    {
        "account_update",
        "account_review_update",
        "account_alerts",
        "account_settings_update",
        "business_capability_update",
        "phone_number_name_update",
        "phone_number_quality_update",
        "security",
        "partner_solutions",
        "payment_configuration_update",
    }
)

MIN_BYTES = 512
MAX_BYTES = 3072


def classify(body: dict[str, Any]) -> tuple[str, ...]:
    """Event types a body yields under the default routing (docs/design.md §4)."""
    found: set[str] = set()
    for entry in body.get("entry") or []:
        for change in entry.get("changes") or []:
            field = change.get("field")
            value = change.get("value") or {}
            if field == "messages":
                if value.get("messages"):
                    found.add("message")
                if value.get("statuses"):
                    found.add("status")
                if not value.get("messages") and not value.get("statuses"):
                    # only errors[] (or nothing known): an account-level problem
                    found.add("account" if value.get("errors") else "unrouted")
            elif field in TEMPLATE_FIELDS:
                found.add("template")
            elif field in ACCOUNT_FIELDS:
                found.add("account")
            else:
                found.add("unrouted")
    return tuple(t for t in EVENT_TYPES if t in found)


def kind_of(types: Iterable[str]) -> str:
    """A payload's kind: its event types joined by '+', in EVENT_TYPES order."""
    present = set(types)
    return "+".join(t for t in EVENT_TYPES if t in present)


def types_of(kind: str) -> tuple[str, ...]:
    return tuple(kind.split("+")) if kind else ()


@dataclass(frozen=True)
class Payload:
    body: bytes
    types: tuple[str, ...]
    fields: tuple[str, ...]

    @property
    def kind(self) -> str:
        return kind_of(self.types)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


# ---------------------------------------------------------------------------------------------
# Building blocks

FIRST_NAMES = [
    "Ana",
    "João",
    "Mehmet",
    "Ayşe",
    "Priya",
    "Chen",
    "Fatima",
    "Lukas",
    "Sofía",
    "Olu",
    "Nguyễn",
    "Zeynep",
    "Carlos",
    "Emily",
    "Ahmed",
    "Yuki",
    "Ivan",
    "Amara",
    "Noah",
    "Lea",
]
LAST_NAMES = [
    "Silva",
    "Yılmaz",  # noqa: RUF001 - a Turkish name, dotless i on purpose
    "Sharma",
    "Wang",
    "Müller",
    "García",
    "Okafor",
    "Kaya",
    "Smith",
    "Tanaka",
    "Petrov",
    "Haddad",
    "Dubois",
    "Rossi",
    "Kowalski",
    "Öztürk",
]
TEXTS = [
    "Hi, where is my order? It was supposed to arrive yesterday.",
    "Merhaba, siparişim ne zaman kargoya verilecek?",
    "Olá! Gostaria de saber o status do meu pedido 🙏",
    "Can I change the delivery address to my office?",
    "Thanks a lot, received it 👍",
    "¿Tienen esta camiseta en talla M?",
    "I'd like to return the shoes, they are too small.",
    "Bonjour, mon code promo ne fonctionne pas.",
    "Please call me back after 5pm",
    "Ok",
    "What are your opening hours on Sunday?",
    "Ich habe zweimal bezahlt, bitte um Rückerstattung.",
    "😂😂 perfect",
    "Is the 20% discount still valid for the premium plan?",
]
CAPTIONS = ["Invoice", "Broken item", "", "Screenshot of the error", "Receipt 📄"]
TEMPLATE_NAMES = [
    "order_confirmation",
    "shipping_update",
    "appointment_reminder",
    "otp_login",
    "abandoned_cart",
    "feedback_request",
    "payment_due",
    "welcome_message",
]
CATEGORIES = ["marketing", "utility", "authentication", "service"]


class Gen:
    """Stateful generator of realistic identifiers and objects."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
        # A few business accounts, each with one to three numbers; keys spread over partitions.
        self.wabas: list[tuple[str, list[tuple[str, str]]]] = []
        for _ in range(12):
            waba_id = str(self.r.randint(100_000_000_000_000, 999_999_999_999_999))
            phones = []
            for _ in range(self.r.randint(1, 3)):
                display = "1555" + "".join(self.r.choices(string.digits, k=7))
                phones.append(
                    (display, str(self.r.randint(100_000_000_000_000, 999_999_999_999_999)))
                )
            self.wabas.append((waba_id, phones))
        self.customers = [self._msisdn() for _ in range(5000)]
        self.clock = 1_750_000_000

    def _msisdn(self) -> str:
        cc = self.r.choice(["90", "55", "1", "44", "49", "91", "234", "52", "62"])
        return cc + "".join(self.r.choices(string.digits, k=12 - len(cc)))

    def ts(self) -> str:
        self.clock += self.r.randint(0, 3)
        return str(self.clock)

    def wamid(self) -> str:
        raw = bytes(self.r.getrandbits(8) for _ in range(self.r.choice((24, 30, 36))))
        return "wamid." + base64.b64encode(b"\x15\x02\x00\x11\x18\x12" + raw).decode().rstrip("=")

    def hexid(self, n: int = 32) -> str:
        return "".join(self.r.choices("0123456789abcdef", k=n))

    def name(self) -> str:
        return f"{self.r.choice(FIRST_NAMES)} {self.r.choice(LAST_NAMES)}"

    def account(self) -> tuple[str, tuple[str, str]]:
        waba_id, phones = self.r.choice(self.wabas)
        return waba_id, self.r.choice(phones)

    # -- messages ------------------------------------------------------------------------------

    def message(self, customer: str) -> dict[str, Any]:
        kind = self.r.choices(
            ["text", "image", "interactive", "button", "location", "reaction", "document", "audio"],
            weights=[55, 10, 10, 8, 4, 5, 4, 4],
        )[0]
        msg: dict[str, Any] = {"from": customer, "id": self.wamid(), "timestamp": self.ts()}
        if self.r.random() < 0.2:
            msg["context"] = {"from": self.account()[1][0], "id": self.wamid()}
        msg["type"] = kind
        if kind == "text":
            msg["text"] = {"body": self.r.choice(TEXTS)}
        elif kind in ("image", "document", "audio"):
            media: dict[str, Any] = {
                "mime_type": {
                    "image": "image/jpeg",
                    "document": "application/pdf",
                    "audio": "audio/ogg; codecs=opus",
                }[kind],
                "sha256": base64.b64encode(self.r.randbytes(32)).decode(),
                "id": str(self.r.randint(10**15, 10**16 - 1)),
            }
            if kind == "image" and (caption := self.r.choice(CAPTIONS)):
                media["caption"] = caption
            if kind == "document":
                media["filename"] = f"invoice-{self.r.randint(1000, 99999)}.pdf"
            if kind == "audio":
                media["voice"] = True
            msg[kind] = media
        elif kind == "interactive":
            if self.r.random() < 0.5:
                msg["interactive"] = {
                    "type": "button_reply",
                    "button_reply": {
                        "id": f"btn_{self.r.randint(1, 9)}",
                        "title": self.r.choice(["Yes", "No", "Track order", "Talk to agent"]),
                    },
                }
            else:
                msg["interactive"] = {
                    "type": "list_reply",
                    "list_reply": {
                        "id": f"row_{self.r.randint(1, 20)}",
                        "title": self.r.choice(["Billing", "Delivery", "Returns"]),
                        "description": "Questions about your last order",
                    },
                }
        elif kind == "button":
            msg["button"] = {
                "payload": self.r.choice(["STOP_PROMOTIONS", "CONFIRM", "RESCHEDULE"]),
                "text": self.r.choice(["Stop promotions", "Confirm", "Reschedule"]),
            }
            msg["context"] = {"from": self.account()[1][0], "id": self.wamid()}
        elif kind == "location":
            msg["location"] = {
                "latitude": round(self.r.uniform(-40, 60), 6),
                "longitude": round(self.r.uniform(-120, 140), 6),
                "name": "Home",
                "address": "Main Street 1",
            }
        elif kind == "reaction":
            msg["reaction"] = {
                "message_id": self.wamid(),
                "emoji": self.r.choice(["👍", "❤️", "😂", "🙏"]),
            }
        return msg

    def contact(self, customer: str) -> dict[str, Any]:
        return {"profile": {"name": self.name()}, "wa_id": customer}

    # -- statuses ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        state = self.r.choices(["sent", "delivered", "read", "failed"], weights=[30, 40, 27, 3])[0]
        st: dict[str, Any] = {
            "id": self.wamid(),
            "status": state,
            "timestamp": self.ts(),
            "recipient_id": self.r.choice(self.customers),
        }
        if state in ("sent", "delivered"):
            category = self.r.choice(CATEGORIES)
            conversation: dict[str, Any] = {"id": self.hexid(), "origin": {"type": category}}
            if state == "sent":
                conversation["expiration_timestamp"] = str(self.clock + 86400)
            st["conversation"] = conversation
            st["pricing"] = {
                "billable": category != "service",
                "pricing_model": "PMP",
                "category": category,
                "type": "regular",
            }
        elif state == "failed":
            code = self.r.choice([131026, 131047, 131049, 130472])
            st["errors"] = [
                {
                    "code": code,
                    "title": "Message undeliverable",
                    "message": "Message undeliverable",
                    "error_data": {
                        "details": "Message could not be delivered: the recipient may not "
                        "be on WhatsApp or has not accepted the latest terms."
                    },
                    "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                }
            ]
        if self.r.random() < 0.05:
            st["biz_opaque_callback_data"] = f"campaign={self.r.randint(1, 500)}"
        return st


def envelope(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": entries}


def messages_change(
    g: Gen,
    phone: tuple[str, str],
    *,
    messages: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": phone[0], "phone_number_id": phone[1]},
    }
    if contacts:
        value["contacts"] = contacts
    if messages:
        value["messages"] = messages
    if statuses:
        value["statuses"] = statuses
    if errors:
        value["errors"] = errors
    return {"value": value, "field": "messages"}


# ---------------------------------------------------------------------------------------------
# Body families


def status_body(g: Gen) -> dict[str, Any]:
    # Mostly one to three statuses, sometimes a larger batch or two numbers in one entry.
    n = g.r.choices([1, 2, 3, 4, 6, 8], weights=[40, 25, 15, 10, 6, 4])[0]
    waba_id, phone = g.account()
    changes = [messages_change(g, phone, statuses=[g.status() for _ in range(n)])]
    if g.r.random() < 0.1:
        _, other = g.account()
        changes.append(
            messages_change(g, other, statuses=[g.status() for _ in range(g.r.randint(1, 3))])
        )
    entries = [{"id": waba_id, "changes": changes}]
    if g.r.random() < 0.05:
        waba2, phone2 = g.account()
        entries.append(
            {"id": waba2, "changes": [messages_change(g, phone2, statuses=[g.status()])]}
        )
    return envelope(entries)


def message_body(g: Gen) -> dict[str, Any]:
    waba_id, phone = g.account()
    customer = g.r.choice(g.customers)
    n = g.r.choices([1, 2, 3], weights=[80, 15, 5])[0]
    msgs = [g.message(customer) for _ in range(n)]
    statuses = None
    if g.r.random() < 0.08:  # a messages change carrying both: records on two topics
        statuses = [g.status() for _ in range(g.r.randint(1, 2))]
    return envelope(
        [
            {
                "id": waba_id,
                "changes": [
                    messages_change(
                        g, phone, contacts=[g.contact(customer)], messages=msgs, statuses=statuses
                    )
                ],
            }
        ]
    )


def template_change(g: Gen) -> dict[str, Any]:
    field = g.r.choice(sorted(TEMPLATE_FIELDS))
    tid = g.r.randint(10**14, 10**15 - 1)
    name = g.r.choice(TEMPLATE_NAMES)
    if field == "message_template_status_update":
        event = g.r.choice(["APPROVED", "REJECTED", "PENDING", "PAUSED", "DISABLED"])
        value: dict[str, Any] = {
            "event": event,
            "message_template_id": tid,
            "message_template_name": name,
            "message_template_language": g.r.choice(["en_US", "tr", "pt_BR", "es"]),
            "reason": "NONE" if event != "REJECTED" else "INCORRECT_CATEGORY",
        }
        if event == "PAUSED":
            value["other_info"] = {
                "title": "FIRST_PAUSE",
                "description": "Your message template has been paused for 3 "
                "hours as of 2025-06-18 due to low quality.",
            }
    elif field == "message_template_quality_update":
        value = {
            "previous_quality_score": "GREEN",
            "new_quality_score": g.r.choice(["YELLOW", "RED"]),
            "message_template_id": tid,
            "message_template_name": name,
            "message_template_language": "en_US",
        }
    elif field == "message_template_components_update":
        value = {
            "message_template_id": tid,
            "message_template_name": name,
            "message_template_language": "en_US",
            "message_template_element": "Hi {{1}}, your order {{2}} has shipped.",
            "message_template_title": "Order update",
            "message_template_footer": "Reply STOP to opt out",
        }
    else:
        value = {
            "message_template_id": tid,
            "message_template_name": name,
            "message_template_language": "en_US",
            "previous_category": "UTILITY",
            "new_category": "MARKETING",
        }
    return {"value": value, "field": field}


def template_body(g: Gen) -> dict[str, Any]:
    waba_id, _ = g.account()
    return envelope(
        [
            {
                "id": waba_id,
                "time": int(g.ts()),
                "changes": [template_change(g) for _ in range(g.r.randint(2, 4))],
            }
        ]
    )


def account_change(g: Gen) -> dict[str, Any]:
    field = g.r.choice(
        [
            "account_update",
            "phone_number_quality_update",
            "account_review_update",
            "phone_number_name_update",
            "business_capability_update",
            "security",
        ]
    )
    _, phone = g.account()
    if field == "account_update":
        value: dict[str, Any] = {
            "phone_number": phone[0],
            "event": "ACCOUNT_VIOLATION",
            "violation_info": {"violation_type": "SCAM"},
            "ban_info": {"waba_ban_state": "SCHEDULE_FOR_DISABLE", "waba_ban_date": "2025-07-01"},
        }
    elif field == "phone_number_quality_update":
        value = {
            "display_phone_number": phone[0],
            "event": g.r.choice(["FLAGGED", "UNFLAGGED", "UPGRADE"]),
            "current_limit": g.r.choice(["TIER_1K", "TIER_10K", "TIER_100K", "TIER_UNLIMITED"]),
        }
    elif field == "account_review_update":
        value = {"decision": g.r.choice(["APPROVED", "REJECTED", "PENDING"])}
    elif field == "phone_number_name_update":
        value = {
            "display_phone_number": phone[0],
            "decision": "APPROVED",
            "requested_verified_name": "Acme Store",
            "rejection_reason": None,
        }
    elif field == "business_capability_update":
        value = {"max_daily_conversation_per_phone": 100000, "max_phone_numbers_per_business": 25}
    else:
        value = {
            "display_phone_number": phone[0],
            "event": "PIN_CHANGED",
            "requester": str(g.r.randint(10**14, 10**15 - 1)),
        }
    return {"value": value, "field": field}


def account_body(g: Gen) -> dict[str, Any]:
    waba_id, phone = g.account()
    if g.r.random() < 0.25:
        # A messages change with only errors[]: classified as account.
        err = {
            "code": 131042,
            "title": "Business eligibility payment issue",
            "message": "Business eligibility payment issue",
            "error_data": {
                "details": "There was an error related to your payment method; "
                "check the payment settings in WhatsApp Manager."
            },
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
        }
        changes = [messages_change(g, phone, errors=[err]) for _ in range(2)]
    else:
        changes = [account_change(g) for _ in range(g.r.randint(2, 4))]
    return envelope([{"id": waba_id, "time": int(g.ts()), "changes": changes}])


def unrouted_body(g: Gen) -> dict[str, Any]:
    waba_id, phone = g.account()
    customer = g.r.choice(g.customers)
    pick = g.r.choice(
        ["smb_message_echoes", "history", "smb_app_state_sync", "calls", "some_future_field"]
    )
    if pick == "smb_message_echoes":
        echoes = []
        for _ in range(g.r.randint(1, 3)):
            echo = g.message(customer)
            echo["from"], echo["to"] = phone[0], customer
            echoes.append(echo)
        value: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": phone[0], "phone_number_id": phone[1]},
            "message_echoes": echoes,
        }
    elif pick == "history":
        threads = []
        for _ in range(g.r.randint(1, 2)):
            msgs = []
            for _ in range(g.r.randint(2, 4)):
                m = g.message(customer)
                m["history_context"] = {"status": g.r.choice(["DELIVERED", "READ", "PLAYED"])}
                msgs.append(m)
            threads.append({"id": customer, "messages": msgs})
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": phone[0], "phone_number_id": phone[1]},
            "history": [
                {"metadata": {"phase": 0, "chunk_order": 1, "progress": 55}, "threads": threads}
            ],
        }
    elif pick == "smb_app_state_sync":
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": phone[0], "phone_number_id": phone[1]},
            "state_sync": [
                {
                    "type": "contact",
                    "contact": {
                        "full_name": g.name(),
                        "first_name": "X",
                        "phone_number": g.r.choice(g.customers),
                    },
                    "action": "add",
                    "metadata": {"timestamp": g.ts()},
                }
                for _ in range(g.r.randint(3, 6))
            ],
        }
    elif pick == "calls":
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": phone[0], "phone_number_id": phone[1]},
            "contacts": [g.contact(customer)],
            "calls": [
                {
                    "id": "wacid." + g.hexid(40),
                    "from": customer,
                    "to": phone[0],
                    "event": "connect",
                    "timestamp": g.ts(),
                    "direction": "USER_INITIATED",
                    "session": {"sdp_type": "offer", "sdp": "v=0\r\no=- " + g.hexid(20)},
                }
            ],
        }
    else:
        value = {
            "messaging_product": "whatsapp",
            "something_new": {
                "id": g.hexid(),
                "detail": "a field Meta added after this relay was written",
            },
            "items": [{"k": g.hexid(8), "v": g.hexid(24)} for _ in range(8)],
        }
    changes = [{"value": value, "field": pick}]
    if g.r.random() < 0.3:
        changes.append(
            {
                "value": {
                    "event": "opt_out",
                    "wa_id": customer,
                    "category": "marketing_messages",
                    "timestamp": int(g.ts()),
                    "detail": "User opted out of marketing",
                },
                "field": "user_preferences",
            }
        )
    return envelope([{"id": waba_id, "changes": changes}])


FAMILIES = {
    "status": (status_body, 70.0),
    "message": (message_body, 25.0),
    "template": (template_body, 5 / 3),
    "account": (account_body, 5 / 3),
    "unrouted": (unrouted_body, 5 / 3),
}


def serialise(g: Gen, body: dict[str, Any]) -> bytes:
    # Meta sends compact JSON; some senders escape non-ASCII, some send raw UTF-8. Both kinds
    # are in the mix, so a relay that re-serialises bodies shows up in the reconciliation.
    if g.r.random() < 0.5:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def fields_of(body: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted({c["field"] for e in body["entry"] for c in e["changes"]}))


def generate(count: int = 2000, seed: int = 1) -> list[Payload]:
    """`count` payloads whose family counts follow FAMILIES' weights exactly (rounded), shuffled."""
    g = Gen(seed)
    total_weight = sum(w for _, w in FAMILIES.values())
    quotas = {name: round(count * w / total_weight) for name, (_, w) in FAMILIES.items()}
    quotas["status"] += count - sum(quotas.values())
    order = [name for name, q in quotas.items() for _ in range(q)]
    g.r.shuffle(order)
    out: list[Payload] = []
    for name in order:
        maker = FAMILIES[name][0]
        for _attempt in range(200):
            body = maker(g)
            raw = serialise(g, body)
            if MIN_BYTES <= len(raw) <= MAX_BYTES:
                break
        else:  # pragma: no cover - the families are shaped to fit
            raise RuntimeError(
                f"could not make a {name} body within {MIN_BYTES}..{MAX_BYTES} bytes"
            )
        out.append(Payload(body=raw, types=classify(json.loads(raw)), fields=fields_of(body)))
    return out


def write_jsonl(payloads: list[Payload], path: Path) -> None:
    """The load generator's input: one {"kind", "body" (base64)} object per line."""
    with path.open("w", encoding="ascii") as f:
        for p in payloads:
            f.write(json.dumps({"kind": p.kind, "body": base64.b64encode(p.body).decode()}) + "\n")


def summary(payloads: list[Payload]) -> dict[str, Any]:
    sizes = sorted(len(p.body) for p in payloads)
    kinds = Counter(p.kind for p in payloads)
    records = Counter(t for p in payloads for t in p.types)
    return {
        "count": len(payloads),
        "bytes": {
            "min": sizes[0],
            "median": sizes[len(sizes) // 2],
            "max": sizes[-1],
            "mean": round(sum(sizes) / len(sizes)),
        },
        "by_kind": dict(sorted(kinds.items())),
        "records_per_request": round(sum(records.values()) / len(payloads), 3),
        "records_by_type": {t: records.get(t, 0) for t in EVENT_TYPES},
        "non_ascii_bodies": sum(1 for p in payloads if any(b > 127 for b in p.body)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, help="write the load generator's JSON lines file here")
    ap.add_argument(
        "--bodies-out", type=Path, help="write the raw bodies, one per line (for bench/wrk.lua)"
    )
    ap.add_argument("--sample", type=int, metavar="N", help="print body N (pretty) and exit")
    args = ap.parse_args(argv)
    payloads = generate(args.count, args.seed)
    if args.sample is not None:
        p = payloads[args.sample]
        print(f"# kind={p.kind} fields={','.join(p.fields)} bytes={len(p.body)}", file=sys.stderr)
        print(json.dumps(json.loads(p.body), indent=2, ensure_ascii=False))
        return 0
    if args.out:
        write_jsonl(payloads, args.out)
    if args.bodies_out:
        # Compact JSON never holds a raw newline, so one body per line is unambiguous.
        args.bodies_out.write_bytes(b"".join(p.body + b"\n" for p in payloads))
    print(json.dumps(summary(payloads), indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
