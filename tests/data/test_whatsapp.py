"""WhatsApp export cleaning: both date layouts, system lines, notices, links, mentions, multi-line messages."""

from __future__ import annotations

from collections import Counter

from ablate.data.whatsapp import clean_chat

ANDROID = """\
12/31/23, 9:40 PM - Messages and calls are end-to-end encrypted. No one outside of this chat can read them.
12/31/23, 9:40 PM - Alice created group "Family"
12/31/23, 9:41\u202fPM - Alice: Salam! see https://example.com/x?a=1 and mail me at a.b@example.org
this line belongs to the same message
12/31/23, 9:42 PM - Bob: <Media omitted>
12/31/23, 9:43 PM - Bob: This message was deleted
12/31/23, 9:44 PM - Alice added Carol
12/31/23, 9:45 PM - Carol: @\u2068Alice Smith\u2069 labas? @212600000000 hi
12/31/23, 9:46 PM - Alice changed the subject from "a" to "b: c"
12/31/23, 9:47 PM - Bob: www.example.com
12/31/23, 9:48 PM - Bob: wakha, ghadi nji <This message was edited>
"""

IOS = """\
[31/12/2023, 21:40:00] Family: \u200eMessages and calls are end-to-end encrypted.
[31/12/2023, 21:40:01] Family: \u200eAlice added Bob
[31/12/2023, 21:41:05] Bob: شنو كتدير؟
[31/12/2023, 21:41:06] Bob: \u200eimage omitted
[31/12/2023, 21:41:07] Alice: \u200e<attached: 00000012-PHOTO-2023-12-31-21-41-07.jpg>
[31/12/2023, 21:41:08] Alice: first line
second line
third line
[31/12/2023, 21:41:09] Bob: \u200eYou deleted this message.
"""


def test_android_layout_keeps_messages_and_drops_everything_else():
    stats = Counter()
    cleaned = clean_chat(ANDROID, keep_sender=True, stats=stats)
    assert cleaned.splitlines() == [
        "Alice: Salam! see and mail me at",
        "this line belongs to the same message",
        "Carol: labas? hi",
        "Bob: wakha, ghadi nji",
    ]
    assert stats["chat_system_lines"] == 4  # encryption notice, created group, added, changed the subject
    assert stats["chat_notices_dropped"] == 2  # media omitted, deleted
    assert stats["chat_messages_empty_after_cleaning"] == 1  # the bare link


def test_ios_layout_with_multiline_message_and_arabic():
    stats = Counter()
    cleaned = clean_chat(IOS, keep_sender=True, stats=stats)
    assert cleaned == "Bob: شنو كتدير؟\nAlice: first line\nsecond line\nthird line"
    assert "21:41" not in cleaned and "[" not in cleaned


def test_sender_can_be_dropped():
    cleaned = clean_chat(IOS, keep_sender=False, stats=Counter())
    assert cleaned == "شنو كتدير؟\nfirst line\nsecond line\nthird line"


def test_european_android_dates_and_24h_clock():
    chat = "31/12/2023, 21:41 - Youssef: ana f dar\n31.12.23, 21:42 - Youssef: daba nji\n"
    assert clean_chat(chat, keep_sender=False, stats=Counter()) == "ana f dar\ndaba nji"


def test_text_that_is_not_a_chat_cleans_to_nothing():
    stats = Counter()
    assert clean_chat("just some notes\nwithout timestamps\n", keep_sender=True, stats=stats) == ""
    assert stats["chat_messages"] == 0
