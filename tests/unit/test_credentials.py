"""Credential files read again while serving: what is accepted, what is refused, what changes.

The reloader runs here against real files laid out as the kubelet lays out a Secret mount
(tests/secret_mount.py); tests/integration/test_rotation.py rotates a running relay process.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from relay import config
from relay.auth import Authenticator
from relay.credentials import CredentialReloader, file_state
from relay.metrics import Metrics
from relay.outcomes import ReloadResult
from tests.secret_mount import SecretMount

OLD = "old-token-0123456789"
NEW = "new-token-9876543210"
SECRET = "app-secret-0123456789"


def settings_for(mount: SecretMount, **auth: object) -> config.Settings:
    env = {
        f"RELAY_AUTH__{key.upper()}_FILE": str(mount.path(key))
        for key in ("bearer_tokens", "verify_token")
        if mount.path(key).exists()
    }
    env.update({f"RELAY_AUTH__{k.upper()}": str(v) for k, v in auth.items()})
    return config.parse(None, env)


@pytest.fixture
def mount(tmp_path: Path) -> SecretMount:
    mount = SecretMount(tmp_path / "secrets")
    mount.write({"bearer_tokens": f"{OLD}\n", "verify_token": "verify-me\n"})
    return mount


def test_the_file_paths_stay_in_the_settings_for_later(mount: SecretMount) -> None:
    auth = settings_for(mount).auth
    assert auth.bearer_tokens == [OLD]
    assert auth.secret_files() == {
        "bearer_tokens": mount.path("bearer_tokens"),
        "verify_token": mount.path("verify_token"),
    }


def test_reread_reads_every_file_again_and_keeps_inline_values(mount: SecretMount) -> None:
    auth = settings_for(mount, app_secrets=f'["{SECRET}"]').auth
    mount.write({"bearer_tokens": f"{OLD}\n\n  {NEW}  \n", "verify_token": "verify-again"})
    reread = config.reread_auth(auth)
    assert reread.bearer_tokens == [OLD, NEW]
    assert reread.verify_token == "verify-again"
    assert reread.app_secrets == [SECRET]
    assert reread.secret_files() == auth.secret_files()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "is empty now"),
        ("\n  \n", "is empty now"),
        (f"{OLD}\nsh0rt\n", "auth.bearer_tokens[1]: shorter than 16 characters"),
        (f"{OLD}\nt4b\th3re-0123456789\n", "printable ASCII"),
        (f"{OLD}\ntöken-0123456789012\n", "printable ASCII"),
    ],
    ids=["empty", "blank", "short", "control", "non-ascii"],
)
def test_a_refused_file_raises_without_quoting_it(
    mount: SecretMount, content: str, fragment: str
) -> None:
    auth = settings_for(mount).auth
    mount.write({"bearer_tokens": content, "verify_token": "verify-me"})
    with pytest.raises(config.ConfigError) as caught:
        config.reread_auth(auth)
    assert not isinstance(caught.value, config.SecretFileUnreadable)
    text = "\n".join(caught.value.problems)
    assert fragment in text
    for line in content.split():
        assert line not in text.replace(str(mount.root), "")


def test_short_credentials_pass_when_weak_ones_are_allowed(mount: SecretMount) -> None:
    auth = settings_for(mount, allow_weak_credentials="true").auth
    mount.write({"bearer_tokens": "dev\n", "verify_token": "v"})
    assert config.reread_auth(auth).bearer_tokens == ["dev"]


def test_a_verify_token_file_may_not_become_empty(mount: SecretMount) -> None:
    auth = settings_for(mount).auth
    mount.write({"bearer_tokens": OLD, "verify_token": "\n"})
    with pytest.raises(config.ConfigError, match="verify_token_file"):
        config.reread_auth(auth)


def test_a_missing_or_binary_file_is_unreadable(mount: SecretMount, tmp_path: Path) -> None:
    auth = settings_for(mount).auth
    mount.path("bearer_tokens").unlink()
    with pytest.raises(config.SecretFileUnreadable, match="cannot read"):
        config.reread_auth(auth)
    mount.path("bearer_tokens").symlink_to(Path("..data") / "bearer_tokens")
    (mount.root / "..data" / "bearer_tokens").write_bytes(b"\xff\xfe" + OLD.encode())
    with pytest.raises(config.SecretFileUnreadable, match="not UTF-8 text") as caught:
        config.reread_auth(auth)
    assert "0xff" not in str(caught.value)


def test_a_binary_file_at_start_up_is_a_config_error_too(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_bytes(b"\xff" * 20)
    with pytest.raises(config.ConfigError, match="not UTF-8 text"):
        config.parse(None, {"RELAY_AUTH__BEARER_TOKENS_FILE": str(tmp_path / "tokens")})


def test_a_kubelet_swap_changes_the_state_even_when_size_and_mtime_match(
    mount: SecretMount,
) -> None:
    path = mount.path("bearer_tokens")
    before = file_state(path)
    stat = os.stat(path)
    mount.write({"bearer_tokens": f"{NEW}\n", "verify_token": "verify-me\n"})  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = file_state(path)
    assert before is not None
    assert after is not None
    assert (after.size, after.mtime_ns) == (before.size, before.mtime_ns)
    assert after != before
    assert file_state(mount.root / "nothing-here") is None


class Applied:
    def __init__(self) -> None:
        self.seen: list[Authenticator] = []

    def __call__(self, authenticator: Authenticator) -> None:
        self.seen.append(authenticator)


def exposition(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


async def test_the_reloader_applies_a_changed_file_and_counts_it(mount: SecretMount) -> None:
    auth = settings_for(mount).auth
    metrics = Metrics("test", credentials=("bearer:0",))
    applied = Applied()
    reloader = CredentialReloader(auth, metrics, applied)
    assert await reloader.check(trigger="test", only_if_changed=True) is None
    assert await reloader.check(trigger="start", quiet_if_same=True) is None
    assert applied.seen == []

    mount.write({"bearer_tokens": f"{OLD}\n{NEW}\n", "verify_token": "verify-me"})
    assert await reloader.check(trigger="test", only_if_changed=True) is ReloadResult.SUCCESS
    [authenticator] = applied.seen
    assert authenticator.check_bearer([f"Bearer {NEW}"]).credentials == ("bearer:1",)
    assert authenticator.check_bearer([f"Bearer {OLD}"]).credentials == ("bearer:0",)
    assert authenticator.check_verify_token("verify-me")
    assert reloader.auth.bearer_tokens == [OLD, NEW]
    text = exposition(metrics)
    assert 'whatsapp_relay_credentials_reloaded_total{result="success"} 1.0' in text
    assert 'whatsapp_relay_auth_success_total{credential="bearer:1"} 0.0' in text
    assert "whatsapp_relay_credentials_last_reload_successful 1.0" in text


async def test_catch_up_applies_a_file_swapped_since_the_configuration_was_read(
    mount: SecretMount,
) -> None:
    auth = settings_for(mount).auth
    mount.write({"bearer_tokens": f"{NEW}\n", "verify_token": "verify-me"})
    applied = Applied()
    reloader = CredentialReloader(auth, Metrics("test", credentials=("bearer:0",)), applied)
    # The snapshot already shows the new file, so polling alone would never notice it.
    assert await reloader.check(trigger="test", only_if_changed=True) is None
    await reloader.catch_up()
    [authenticator] = applied.seen
    assert authenticator.check_bearer([f"Bearer {NEW}"]).credentials == ("bearer:0",)
    assert reloader.auth.bearer_tokens == [NEW]
    await reloader.catch_up()  # nothing changed since: nothing applied again
    assert len(applied.seen) == 1


async def test_a_refused_file_keeps_the_credentials_until_a_good_one_comes(
    mount: SecretMount, caplog: pytest.LogCaptureFixture
) -> None:
    auth = settings_for(mount).auth
    metrics = Metrics("test", credentials=("bearer:0",))
    applied = Applied()
    reloader = CredentialReloader(auth, metrics, applied)
    loaded_at = metrics.credentials_loaded_at._value.get()

    mount.write({"bearer_tokens": "too-short\n", "verify_token": "verify-me"})
    assert await reloader.check(trigger="test", only_if_changed=True) is ReloadResult.INVALID
    assert applied.seen == []
    assert reloader.auth == auth
    # Unchanged since: not read again, not counted again, still failing.
    assert await reloader.check(trigger="test", only_if_changed=True) is None
    text = exposition(metrics)
    assert 'whatsapp_relay_credentials_reloaded_total{result="invalid"} 1.0' in text
    assert "whatsapp_relay_credentials_last_reload_successful 0.0" in text
    assert metrics.credentials_loaded_at._value.get() == loaded_at
    assert "too-short" not in caplog.text
    assert "credential files refused" in caplog.text

    mount.write({"bearer_tokens": f"{NEW}\n", "verify_token": "verify-me"})
    assert await reloader.check(trigger="test", only_if_changed=True) is ReloadResult.SUCCESS
    assert applied.seen[-1].check_bearer([f"Bearer {NEW}"]).ok
    assert not applied.seen[-1].check_bearer([f"Bearer {OLD}"]).ok
    assert "whatsapp_relay_credentials_last_reload_successful 1.0" in exposition(metrics)
    assert metrics.credentials_loaded_at._value.get() >= loaded_at


def test_success_counters_keep_their_index_when_credentials_go() -> None:
    metrics = Metrics("test", credentials=("bearer:0", "bearer:1", "app_secret:0"))
    metrics.auth_success["bearer:1"].inc()
    metrics.add_credentials(("bearer:0", "app_secret:0", "app_secret:1", "app_secret:2"))
    text = exposition(metrics)
    assert 'whatsapp_relay_auth_success_total{credential="bearer:1"} 1.0' in text
    assert 'whatsapp_relay_auth_success_total{credential="app_secret:2"} 0.0' in text
    assert "whatsapp_relay_credentials_reloaded_total" in text
    for result in ReloadResult:
        assert f'whatsapp_relay_credentials_reloaded_total{{result="{result}"}} 0.0' in text
