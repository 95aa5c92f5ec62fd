import pytest

from omics_batch_runs.emulator.tokens import TokenError, TokenSigner


def test_token_round_trip_and_refusals() -> None:
    signer = TokenSigner(b"k")
    token = signer.issue("batch-1", 300)
    assert signer.position("batch-1", token) == 300
    assert len(token) <= 128
    with pytest.raises(TokenError):
        signer.position("batch-2", token)  # another batch or filter
    altered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(TokenError):
        signer.position("batch-1", altered)
    with pytest.raises(TokenError):
        signer.position("batch-1", "not a token!")
    with pytest.raises(TokenError):
        TokenSigner(b"other").position("batch-1", token)
