"""WhatsApp "export chat" files -> training text (the original study's first step).

Both common layouts are read:
    Android   12/31/23, 9:41 PM - Alice: message        31/12/2023, 21:41 - Alice: message
    iOS       [31/12/2023, 21:41:05] Alice: message     [12/31/23, 9:41:05 PM] Alice: message
A line that does not start with a timestamp continues the message above it, so multi-line messages stay whole.
Timestamps, system lines (no sender: "Alice added Bob", the encryption notice; on iOS, lines whose text starts
with U+200E), media and deleted-message notices go; links, e-mail addresses and @mentions are cut out of text.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

_SPACE = r"[ \u00a0\u202f]"  # newer exports put a narrow no-break space before AM/PM
HEADER = re.compile(
    r"^[\u200e\u200f]?\[?"  # iOS wraps the stamp in brackets; a direction mark may lead the line
    rf"\d{{1,4}}[./-]\d{{1,2}}[./-]\d{{1,4}},?{_SPACE}"
    rf"\d{{1,2}}[:.]\d{{2}}(?:[:.]\d{{2}})?(?:{_SPACE}?[AaPp]\.?{_SPACE}?[Mm]\.?)?"
    r"(?:\]\s|\s[-\u2013]\s)"
)
SENDER = re.compile(r"^[\u200e\u200f]?(?P<sender>[^:\n]{1,80}?):\s(?P<text>.*)$", re.S)

# Whole-message notices that carry no text of the chat's own.
NOTICE = re.compile(
    r"^(?:<media omitted>|<attached:[^>]*>|(?:image|video|audio|sticker|gif|document|contact card) omitted"
    r"|this message was deleted\.?|you deleted this message\.?|null|missed (?:voice|video|group) call"
    r"|waiting for this message\..*|.+ \(file attached\))$",
    re.I,
)
# System lines that a sender-like prefix could fool (they may contain a colon): matched before the sender.
SYSTEM = re.compile(
    r"(?:messages and calls are end-to-end encrypted|created group|changed the subject|changed this group's"
    r"|changed the group|changed their phone number|security code|joined using this group's invite link"
    r"|\badded\b|\bremoved\b|\bleft$|you're now an admin|disappearing messages|pinned a message)",
    re.I,
)
INLINE = [
    re.compile(r"(?:https?://|www\.)\S+", re.I),  # links (before e-mails: a URL may hold an @)
    re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),  # e-mail addresses
    re.compile(r"@\u2068[^\u2069]*\u2069|@[\w.+-]+"),  # @mentions: a name in isolate marks, or a number
    re.compile(r"<(?:media omitted|this message was edited|attached:[^>]*)>", re.I),
]
_DIRECTION_MARKS = re.compile(r"[\u200e\u200f\u2068\u2069]")


@dataclass
class Message:
    sender: str
    lines: list[str]


def _is_system(line: str, sender: str, text: str) -> bool:
    """A line with a sender-like prefix that is still a system line: iOS marks those (and attachments) with a
    leading U+200E; an Android one such as `Alice changed the subject to "a: b"` has a quote or a known phrase
    before its colon."""
    return (line.startswith("\u200e") or text.startswith("\u200e") or any(q in sender for q in "\"\u201c")
            or SYSTEM.search(sender) is not None)


def _split_messages(text: str, stats: Counter) -> Iterator[Message]:
    """Messages in order, system lines (and any lines continuing them) left out."""
    current: Message | None = None
    for line in text.splitlines():
        header = HEADER.match(line)
        if header is None:
            if current is not None:
                current.lines.append(line)
            continue
        if current is not None:
            yield current
        rest = line[header.end() :]
        sender = SENDER.match(rest)
        if sender is None or _is_system(rest, sender["sender"], sender["text"]):
            stats["chat_system_lines"] += 1
            current = None
            continue
        current = Message(sender["sender"].strip(), [sender["text"]])
    if current is not None:
        yield current


def clean_text(text: str) -> str:
    """The message text without links, e-mail addresses, mentions or inline notices, whitespace tidied."""
    for pattern in INLINE:
        text = pattern.sub("", text)
    text = _DIRECTION_MARKS.sub("", text)
    lines = (re.sub(r"[ \t\u00a0\u202f]{2,}", " ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def clean_chat(text: str, keep_sender: bool, stats: Counter) -> str:
    """A chat export as plain text: one message per line ("Sender: text" or just "text")."""
    out = []
    for message in _split_messages(text, stats):
        stats["chat_messages"] += 1
        body = "\n".join(message.lines)
        if NOTICE.match(_DIRECTION_MARKS.sub("", body).strip()):
            stats["chat_notices_dropped"] += 1
            continue
        body = clean_text(body)
        if not body:
            stats["chat_messages_empty_after_cleaning"] += 1
            continue
        sender = _DIRECTION_MARKS.sub("", message.sender).strip()
        out.append(f"{sender}: {body}" if keep_sender else body)
    return "\n".join(out)
