from __future__ import annotations

from pathlib import Path

import pytest

from arktrack import ConfigError, MemoryStorage, Tracker
from arktrack.storage import SentMessage

from .conftest import BASE_URL, SECRET


class OldStorage(MemoryStorage):
    """A backend written for register_message, before batches."""

    register_messages = None  # type: ignore[assignment]

    def register_message(self, message: SentMessage) -> None:
        pass


@pytest.mark.parametrize(
    ("kwargs", "setting", "fragment"),
    [
        pytest.param({"secret_key": None}, "secret_key", "required", id="no-secret"),
        pytest.param({"secret_key": ""}, "secret_key", "required", id="empty-secret"),
        pytest.param({"secret_key": "short"}, "secret_key", "16 characters", id="short-secret"),
        pytest.param({"secret_key": [SECRET, "x"]}, "secret_key", "16", id="short-rotated"),
        pytest.param({"secret_key": []}, "secret_key", "at least one", id="no-keys"),
        pytest.param({"base_url": None}, "base_url", "required", id="no-base"),
        pytest.param({"base_url": "track.example.com"}, "base_url", "absolute", id="no-scheme"),
        pytest.param({"base_url": "ftp://x.example"}, "base_url", "http", id="ftp"),
        pytest.param({"base_url": "https://x.example/?a=1"}, "base_url", "query", id="query"),
        pytest.param({"storage": "not a url"}, "storage", "database URL", id="bad-storage"),
        pytest.param(
            {"storage": "mysql://x/y"}, "storage", "SQLite or PostgreSQL", id="other-database"
        ),
        pytest.param(
            {"storage": "postgresql+pg8000://x/y"}, "storage", "no driver", id="no-driver"
        ),
        pytest.param(
            {"trusted_proxies": "10.0.0.1, banana"}, "trusted_proxies", "banana", id="bad-proxy"
        ),
        pytest.param({"secret_key": 123}, "secret_key", "string", id="secret-not-str"),
        pytest.param({"base_url": 123}, "base_url", "URL string", id="base-not-str"),
        pytest.param({"base_url": "http://[::1"}, "base_url", "not a valid URL", id="ipv6"),
        pytest.param({"base_url": "https://x.example:abc"}, "base_url", "not a valid", id="port"),
        pytest.param(
            {"base_url": "https://träck.example"}, "base_url", "xn--trck-moa.example", id="idn"
        ),
        pytest.param({"base_url": "https://x.example/é"}, "base_url", "percent-encode", id="path"),
        pytest.param({"base_url": "https://x.example/a b"}, "base_url", "may hold", id="space"),
        pytest.param({"base_url": 'https://x.example/"'}, "base_url", "may hold", id="quote"),
        pytest.param({"storage": None}, "storage", "Storage object", id="storage-none"),
        pytest.param(
            {"storage": OldStorage()},
            "storage",
            "lacks the Storage method(s) register_messages",
            id="storage-incomplete",
        ),
        pytest.param({"trusted_proxies": 5}, "trusted_proxies", "addresses", id="proxies-int"),
    ],
)
def test_bad_settings_name_the_setting(
    kwargs: dict[str, object], setting: str, fragment: str
) -> None:
    values: dict[str, object] = {"secret_key": SECRET, "base_url": BASE_URL, "storage": "memory://"}
    values.update(kwargs)
    with pytest.raises(ConfigError) as caught:
        Tracker(**values)  # type: ignore[arg-type]
    assert caught.value.setting == setting
    assert fragment in str(caught.value)


def test_environment_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        Tracker.from_env({"ARKTRACK_BASE_URL": BASE_URL})
    assert caught.value.setting == "ARKTRACK_SECRET_KEY"
    with pytest.raises(ConfigError) as caught:
        Tracker.from_env(
            {
                "ARKTRACK_SECRET_KEY": SECRET,
                "ARKTRACK_BASE_URL": BASE_URL,
                "ARKTRACK_STORAGE": "nonsense",
            }
        )
    assert caught.value.setting == "ARKTRACK_STORAGE"


def test_config_mapping_wins_over_environment(tmp_path: Path) -> None:
    tracker = Tracker.from_env(
        {
            "ARKTRACK_SECRET_KEY": "env-key-is-long-enough",
            "ARKTRACK_BASE_URL": "https://env.example",
        },
        config={"ARKTRACK_BASE_URL": "https://config.example", "ARKTRACK_STORAGE": "memory://"},
    )
    assert tracker.settings.base_url == "https://config.example"
    assert tracker.settings.secret_keys == ("env-key-is-long-enough",)
    tracker.close()


def test_comma_separated_keys_rotate() -> None:
    tracker = Tracker.from_env(
        {
            "ARKTRACK_SECRET_KEY": "old-key-0123456789, new-key-0123456789",
            "ARKTRACK_BASE_URL": BASE_URL,
            "ARKTRACK_STORAGE": "memory://",
            "ARKTRACK_TRUSTED_PROXIES": "10.0.0.0/8, ::1",
        }
    )
    assert tracker.settings.secret_keys == ("old-key-0123456789", "new-key-0123456789")
    assert [str(n) for n in tracker.settings.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    tracker.close()


def test_default_storage_is_a_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    tracker = Tracker(secret_key=SECRET, base_url=BASE_URL)
    tracker.register_message("m", "u@example.com")
    tracker.close()
    assert (tmp_path / "arktrack.db").exists()
