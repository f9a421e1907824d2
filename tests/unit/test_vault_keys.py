"""The vault's blind indexes: HMAC-SHA256 under keys derived from the master key, worked out the cheap way."""

from __future__ import annotations

import hashlib
import hmac
from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from hajj_ledger.domain.command_base import Identity
from hajj_ledger.identity.spelling import name_keys
from hajj_ledger.identity.vault import _HMAC, MasterKeys, generate_key


@given(st.binary(min_size=32, max_size=32), st.binary(max_size=300))
def test_the_prepared_hmac_is_hmac_sha256(key: bytes, message: bytes) -> None:
    assert _HMAC(key).digest(message) == hmac.digest(key, message, hashlib.sha256)


def test_sealing_indexes_names_as_a_search_looks_them_up() -> None:
    # Sealing caches each whole name's entries per scope; a search computes them from the keys it was typed with.
    keys = MasterKeys.parse(f"k1:{generate_key()}")
    identity = Identity.model_validate(
        {
            "name_arabic": "محمد بن علي الأنصاري",
            "name_latin": "MOHAMMED BIN ALI EL ANSARY",
            "passport_number": "A1234567",
            "passport_country": "EGY",
            "nationality": "EGY",
            "date_of_birth": "1970-01-01",
            "gender": "male",
        }
    )
    for scope in ("mission-EGY-00001", "mission-EGY-00002", "mission-EGY-00001"):
        sealed = keys.seal(uuid4(), identity, scope)
        expected = keys.name_index(scope, name_keys(identity.name_arabic) | name_keys(identity.name_latin))
        assert sealed.name_index == expected
        assert sealed.passport_index == keys.passport_index("a 1234567", "egy")
    other = keys.seal(uuid4(), identity, "mission-EGY-00002").name_index
    assert not set(other) & set(keys.seal(uuid4(), identity, "mission-EGY-00001").name_index)  # no linking
