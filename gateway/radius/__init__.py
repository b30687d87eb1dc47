"""RADIUS front: codec (this package's ``codec``, ``auth``, ``dictionary``), listener, process.

The codec turns datagrams into ``Packet`` objects and back, with the attribute table
compiled from the FreeRADIUS-format dictionaries shipped in ``dictionaries/``.
"""

from gateway.radius.codec import (
    MAX_PACKET_LEN,
    REASONS,
    Attribute,
    MalformedPacket,
    Packet,
    PacketCode,
    decode_packet,
    decode_reply,
    decode_request,
    decrypt_user_password,
    encode_reply,
    encode_request,
    verify_accounting_request,
    verify_chap,
    verify_message_authenticator,
    verify_pap,
    verify_reply,
)
from gateway.radius.dictionary import (
    AttributeDef,
    AttributeValue,
    Dictionary,
    EncodableValue,
    UnknownAttribute,
    default_dictionary,
)

__all__ = [
    "MAX_PACKET_LEN",
    "REASONS",
    "Attribute",
    "AttributeDef",
    "AttributeValue",
    "Dictionary",
    "EncodableValue",
    "MalformedPacket",
    "Packet",
    "PacketCode",
    "UnknownAttribute",
    "decode_packet",
    "decode_reply",
    "decode_request",
    "decrypt_user_password",
    "default_dictionary",
    "encode_reply",
    "encode_request",
    "verify_accounting_request",
    "verify_chap",
    "verify_message_authenticator",
    "verify_pap",
    "verify_reply",
]
