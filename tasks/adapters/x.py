"""X (API v2): posts through `POST /2/tweets`, media through `/2/media/upload`.

Images go up in one request; GIFs and videos go through the chunked flow
(initialize, append each segment, finalize, then poll the processing status).
Uploaded media ids are saved as handles (`x_media`) so a later attempt reuses
them while X still holds them, and the time the create request was first sent
is saved (`x_sent_at`) so an unknown outcome can be reconciled against the
account's recent posts.
"""

from __future__ import annotations

import asyncio
import html
import logging
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tasks.adapters.base import (
    Adapter,
    Credentials,
    ErrorKind,
    HandleStore,
    Post,
    Published,
    PublishError,
    TokenGrant,
    retry_after,
)
from tasks.adapters.media import Media, content_type_from_url, fetch_media, media_kind
from tasks.adapters.x_text import MAX_WEIGHTED_LENGTH, find_urls, weighted_length

logger = logging.getLogger(__name__)

MAX_BYTES = {"image": 5 * 1024 * 1024, "gif": 15 * 1024 * 1024}
VIDEO_MAX_BYTES = 512 * 1024 * 1024
MEDIA_CATEGORY = {"image": "tweet_image", "gif": "tweet_gif", "video": "tweet_video"}
# X accepts append segments of up to 5 MB; 4 MiB keeps a margin and keeps a
# 512 MB video well under the 1,000-segment limit.
CHUNK_BYTES = 4 * 1024 * 1024
# Reuse an uploaded media id only if X keeps it at least this much longer.
REUSE_MARGIN = timedelta(minutes=10)
# Posts created a little before our clock said we sent (clock skew) still count.
CLOCK_SKEW = timedelta(minutes=2)
RECONCILE_PAGES = 5


class _Attempt:
    """The credentials of one publish attempt, refreshed at most once."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.refreshed = False

    async def refresh(self) -> bool:
        """Get new credentials once per attempt; False if that is not possible."""
        if self.refreshed or self.credentials.refresh is None:
            return False
        self.refreshed = True
        self.credentials = await self.credentials.refresh()
        return True


class XAdapter(Adapter):
    """Publishes to X with an OAuth 2 user token (`Credentials.account_id` =
    the X user id, used to look posts up after an unknown outcome)."""

    platform = "x"
    default_base_url = "https://api.x.com"

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str | None = None,
        *,
        chunk_bytes: int = CHUNK_BYTES,
        max_processing_secs: float = 600.0,
    ) -> None:
        super().__init__(client, base_url)
        self.chunk_bytes = chunk_bytes
        self.max_processing_secs = max_processing_secs

    def validate(self, post: Post) -> None:
        if not post.text.strip() and not post.media_urls:
            raise PublishError(ErrorKind.INVALID, "X needs text or media; both empty")

        length = weighted_length(post.text)
        if length > MAX_WEIGHTED_LENGTH:
            raise PublishError(
                ErrorKind.INVALID,
                f"X rejected the post: text is {length} weighted characters, "
                f"the limit is {MAX_WEIGHTED_LENGTH}",
            )

        kinds = [
            media_kind(content_type_from_url(url) or "") for url in post.media_urls
        ]
        _check_media_mix(kinds)

    async def publish(
        self, post: Post, credentials: Credentials, handles: HandleStore
    ) -> Published:
        self.validate(post)
        attempt = _Attempt(credentials)
        media_ids = await self._upload_all(post, attempt, handles)

        body: dict[str, Any] = {}
        if post.text:
            body["text"] = post.text
        if media_ids:
            body["media"] = {"media_ids": media_ids}
        if reply_to := post.options.get("reply_to_tweet_id"):
            body["reply"] = {"in_reply_to_tweet_id": str(reply_to)}
        if quote := post.options.get("quote_tweet_id"):
            body["quote_tweet_id"] = str(quote)

        # Saved before sending: if the answer is lost, reconcile knows from when
        # to search. The first attempt's time is kept, since it is the earliest
        # moment the post could have appeared.
        sent_before = "x_sent_at" in post.handles
        if not sent_before:
            await handles.save("x_sent_at", datetime.now(UTC).isoformat())

        response = await self._call(
            attempt, "POST", "/2/tweets", creates=True, json=body
        )
        if response.status_code == 403 and _is_duplicate(response):
            return await self._after_duplicate(post, attempt.credentials, sent_before)
        if response.is_error:
            raise _error(response, "create the post")

        tweet_id = _json(response).get("data", {}).get("id")
        if not isinstance(tweet_id, str) or not tweet_id:
            raise PublishError(
                ErrorKind.UNKNOWN_OUTCOME,
                f"X answered {response.status_code} to POST /2/tweets without a "
                "post id; the post may be live, check the account",
                http_status=response.status_code,
            )
        logger.info("event=x.posted post=%s remote_id=%s", post.id, tweet_id)
        return Published(tweet_id, permalink(tweet_id))

    async def _after_duplicate(
        self, post: Post, credentials: Credentials, sent_before: bool
    ) -> Published:
        """X refused identical text. After an earlier attempt of this post sent
        its create request, that attempt most likely landed: look it up, and
        never post again. Otherwise the account already has this text from
        another post, which X will never accept twice."""
        if not sent_before:
            raise PublishError(
                ErrorKind.INVALID,
                "X rejected the post: the account already has a post with the "
                "same text (403 duplicate content); change the text",
                http_status=403,
            )
        found = await self.reconcile(post, credentials)
        if found is not None:
            return found
        raise PublishError(
            ErrorKind.UNKNOWN_OUTCOME,
            "X says this text is a duplicate after an earlier attempt was sent, "
            "but the post was not found in the account's recent posts; check the "
            "account before retrying",
            http_status=403,
        )

    async def reconcile(self, post: Post, credentials: Credentials) -> Published | None:
        """Search the account's posts since the first attempt for this text.

        Matching ignores links (X rewrites them to t.co and appends one for
        media) and HTML entities (X escapes `&`, `<`, `>` in `text`); when the
        post had media, the attached media ids must match too.
        """
        sent_at = _parse_time(post.handles.get("x_sent_at"))
        if sent_at is None:
            return None  # the create request was never sent

        attempt = _Attempt(credentials)
        user_id = credentials.account_id or await self._user_id(attempt)
        wanted_text = _comparable(post.text)
        wanted_media = {
            entry["id"]
            for entry in (post.handles.get("x_media") or {}).values()
            if isinstance(entry, dict) and entry.get("id")
        }

        params: dict[str, Any] = {
            "start_time": (sent_at - CLOCK_SKEW).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "max_results": 100,
            "tweet.fields": "created_at,attachments",
        }
        for _ in range(RECONCILE_PAGES):
            response = await self._call(
                attempt, "GET", f"/2/users/{user_id}/tweets", params=params
            )
            if response.is_error:
                # Not being able to look is not an answer: the post may be live.
                error = _error(response, "look up recent posts")
                raise PublishError(
                    ErrorKind.UNKNOWN_OUTCOME,
                    f"{error.message}; check the account before retrying",
                    http_status=error.http_status,
                    retry_at=error.retry_at,
                )
            page = _json(response)
            for tweet in page.get("data") or []:
                if _matches(tweet, wanted_text, wanted_media):
                    logger.info(
                        "event=x.reconciled post=%s remote_id=%s", post.id, tweet["id"]
                    )
                    return Published(tweet["id"], permalink(tweet["id"]))
            token = (page.get("meta") or {}).get("next_token")
            if not token:
                return None
            params["pagination_token"] = token

        raise PublishError(
            ErrorKind.UNKNOWN_OUTCOME,
            f"more than {RECONCILE_PAGES * 100} posts since the attempt; check the "
            "account by hand",
        )

    async def refresh_token(
        self, refresh_token: str, client_id: str | None, client_secret: str | None
    ) -> TokenGrant:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if client_id:
            form["client_id"] = client_id
        # Confidential clients authenticate with HTTP Basic; public ones send
        # only client_id.
        auth = (client_id or "", client_secret) if client_secret else None
        response = await self.request(
            "POST", self.url("/2/oauth2/token"), data=form, auth=auth
        )
        if response.is_error:
            raise _token_error(response)
        body = _json(response)
        if not isinstance(body.get("access_token"), str):
            raise PublishError(
                ErrorKind.TRANSIENT, "X's token endpoint answered without a token"
            )
        return TokenGrant(
            access_token=body["access_token"],
            refresh_token=body.get("refresh_token") or refresh_token,
            expires_in=body.get("expires_in"),
        )

    async def _call(
        self,
        attempt: _Attempt,
        method: str,
        path: str,
        *,
        creates: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """One authorised request; on a 401, refresh once and send it again."""
        while True:
            headers = {"Authorization": f"Bearer {attempt.credentials.access_token}"}
            response = await self.request(
                method, self.url(path), creates=creates, headers=headers, **kwargs
            )
            if response.status_code != 401 or not await attempt.refresh():
                return response
            logger.info("event=x.token_refreshed path=%s", path)

    async def _user_id(self, attempt: _Attempt) -> str:
        response = await self._call(attempt, "GET", "/2/users/me")
        user_id = _json(response).get("data", {}).get("id")
        if response.is_error or not isinstance(user_id, str):
            raise PublishError(
                ErrorKind.UNKNOWN_OUTCOME,
                "cannot tell which X account to search: no account id stored and "
                f"GET /2/users/me answered {response.status_code}",
            )
        return user_id

    async def _upload_all(
        self, post: Post, attempt: _Attempt, handles: HandleStore
    ) -> list[str]:
        """Upload each media URL (reusing earlier uploads); returns the media ids."""
        saved: dict[str, Any] = dict(post.handles.get("x_media") or {})
        now = datetime.now(UTC)
        kinds: list[str] = []
        media_ids: list[str] = []

        for url in post.media_urls:
            entry = saved.get(url)
            if not (isinstance(entry, dict) and _reusable(entry, now)):
                async with fetch_media(self.client, url, VIDEO_MAX_BYTES) as media:
                    entry = await self._upload(media, attempt, handles, saved)
            if entry["state"] != "succeeded":
                entry = await self._wait_processing(url, attempt, handles, saved)
            kinds.append(entry["kind"])
            _check_media_mix(kinds)
            media_ids.append(entry["id"])

        return media_ids

    async def _upload(
        self,
        media: Media,
        attempt: _Attempt,
        handles: HandleStore,
        saved: dict[str, Any],
    ) -> dict[str, Any]:
        kind = media.kind
        limit = MAX_BYTES.get(kind, VIDEO_MAX_BYTES)
        if kind == "other":
            raise PublishError(
                ErrorKind.INVALID,
                f"X cannot attach {media.url}: {media.content_type} is not an "
                "image, GIF or video",
            )
        if media.size > limit:
            raise PublishError(
                ErrorKind.INVALID,
                f"X rejected the media {media.url}: {media.size} bytes, the limit "
                f"for a {kind} is {limit}",
            )

        if kind == "image":
            response = await self._call(
                attempt,
                "POST",
                "/2/media/upload",
                files={
                    "media": (media.filename, media.file.read(), media.content_type)
                },
                data={"media_category": MEDIA_CATEGORY[kind]},
            )
            data = _data_or_raise(response, "upload an image")
        else:
            data = await self._upload_chunked(media, kind, attempt, handles, saved)

        processing = data.get("processing_info") or {}
        entry = {
            "id": data["id"],
            "kind": kind,
            "state": processing.get("state", "succeeded"),
            "expires_at": _expiry(data),
        }
        saved[media.url] = entry
        await handles.save("x_media", saved)
        return entry

    async def _upload_chunked(
        self,
        media: Media,
        kind: str,
        attempt: _Attempt,
        handles: HandleStore,
        saved: dict[str, Any],
    ) -> dict[str, Any]:
        response = await self._call(
            attempt,
            "POST",
            "/2/media/upload/initialize",
            json={
                "media_type": media.content_type,
                "total_bytes": media.size,
                "media_category": MEDIA_CATEGORY[kind],
            },
        )
        media_id = _data_or_raise(response, "start a media upload")["id"]
        saved[media.url] = {"id": media_id, "kind": kind, "state": "uploading"}
        await handles.save("x_media", saved)

        for index, chunk in enumerate(media.chunks(self.chunk_bytes)):
            response = await self._call(
                attempt,
                "POST",
                f"/2/media/upload/{media_id}/append",
                files={"media": (media.filename, chunk, "application/octet-stream")},
                data={"segment_index": str(index)},
            )
            if response.is_error:
                raise _error(response, f"upload segment {index} of {media.url}")

        response = await self._call(
            attempt, "POST", f"/2/media/upload/{media_id}/finalize"
        )
        data = _data_or_raise(response, "finalize a media upload")
        return {**data, "id": data.get("id", media_id)}

    async def _wait_processing(
        self,
        url: str,
        attempt: _Attempt,
        handles: HandleStore,
        saved: dict[str, Any],
    ) -> dict[str, Any]:
        """Poll STATUS every `check_after_secs` until the media of `url` is ready."""
        entry = saved[url]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_processing_secs
        while True:
            response = await self._call(
                attempt,
                "GET",
                "/2/media/upload",
                params={"command": "STATUS", "media_id": entry["id"]},
            )
            info = _data_or_raise(response, "check media processing").get(
                "processing_info", {}
            )
            state = info.get("state", "succeeded")
            logger.debug("event=x.media_status media=%s state=%s", entry["id"], state)

            if state == "succeeded":
                entry = {**entry, "state": "succeeded"}
                saved[url] = entry
                await handles.save("x_media", saved)
                return entry
            if state == "failed":
                reason = (info.get("error") or {}).get("message", "no reason given")
                raise PublishError(
                    ErrorKind.INVALID,
                    f"X could not process media {entry['id']}: {reason}",
                )

            wait = float(info.get("check_after_secs", 1))
            if loop.time() + wait > deadline:
                # The id is saved as still processing: the next attempt resumes
                # polling instead of uploading again.
                raise PublishError(
                    ErrorKind.TRANSIENT,
                    f"X was still processing media {entry['id']} after "
                    f"{self.max_processing_secs:.0f} s",
                )
            await asyncio.sleep(wait)


def permalink(tweet_id: str) -> str:
    return f"https://x.com/i/web/status/{tweet_id}"


def _check_media_mix(kinds: list[str]) -> None:
    """Up to 4 images, or exactly one GIF or one video."""
    if len(kinds) > 4:
        raise PublishError(
            ErrorKind.INVALID, f"X allows at most 4 media per post, got {len(kinds)}"
        )
    if len(kinds) > 1 and any(kind in ("gif", "video") for kind in kinds):
        raise PublishError(
            ErrorKind.INVALID,
            "X allows one GIF or one video per post, alone; got " + ", ".join(kinds),
        )


def _reusable(entry: dict[str, Any], now: datetime) -> bool:
    expires_at = _parse_time(entry.get("expires_at"))
    return (
        bool(entry.get("id"))
        and entry.get("state") in ("succeeded", "pending", "in_progress")
        and expires_at is not None
        and expires_at - REUSE_MARGIN > now
    )


def _expiry(data: dict[str, Any]) -> str | None:
    secs = data.get("expires_after_secs")
    if not isinstance(secs, int):
        return None
    return (datetime.now(UTC) + timedelta(seconds=secs)).isoformat()


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _comparable(text: str) -> str:
    """Text as X may echo it back: entities decoded, links removed, NFC,
    whitespace collapsed."""
    text = unicodedata.normalize("NFC", html.unescape(text))
    for start, end in reversed(find_urls(text)):
        text = text[:start] + text[end:]
    return " ".join(text.split())


def _matches(tweet: Any, wanted_text: str, wanted_media: set[str]) -> bool:
    if not isinstance(tweet, dict) or not isinstance(tweet.get("id"), str):
        return False
    if _comparable(str(tweet.get("text", ""))) != wanted_text:
        return False
    if not wanted_media:
        return True
    keys = (tweet.get("attachments") or {}).get("media_keys") or []
    # A media key is "{type}_{media id}".
    return {key.partition("_")[2] for key in keys} == wanted_media


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _data_or_raise(response: httpx.Response, action: str) -> dict[str, Any]:
    if response.is_error:
        raise _error(response, action)
    data = _json(response).get("data")
    if not isinstance(data, dict) or not data.get("id"):
        raise PublishError(
            ErrorKind.TRANSIENT,
            f"X answered {response.status_code} but no media id when asked to {action}",
            http_status=response.status_code,
        )
    return data


def _is_duplicate(response: httpx.Response) -> bool:
    return "duplicate" in _detail(_json(response)).lower()


def _detail(body: dict[str, Any]) -> str:
    """The most specific message of a problem body (`detail`, `errors[]`)."""
    parts = [str(body["detail"])] if body.get("detail") else []
    for item in body.get("errors") or []:
        if isinstance(item, dict) and item.get("message"):
            parts.append(str(item["message"]))
    return "; ".join(parts) or str(body.get("title", ""))


def _reset_at(response: httpx.Response, header: str) -> datetime | None:
    value = response.headers.get(header, "")
    return datetime.fromtimestamp(int(value), UTC) if value.isdigit() else None


def _error(response: httpx.Response, action: str) -> PublishError:
    """Classify an error answer from X."""
    status = response.status_code
    body = _json(response)
    detail = _detail(body) or response.reason_phrase
    problem = str(body.get("type", ""))
    message = f"X refused to {action} ({status}): {detail}"

    if status == 429:
        now = datetime.now(UTC)
        if problem.endswith("usage-capped"):
            # A 24-hour cap, not the 15-minute window: wait for the later reset.
            resets = [
                _reset_at(response, "x-user-limit-24hour-reset"),
                _reset_at(response, "x-app-limit-24hour-reset"),
            ]
            known = [reset for reset in resets if reset]
            when = max(known) if known else now + timedelta(hours=24)
        else:
            when = (
                _reset_at(response, "x-rate-limit-reset")
                or retry_after(response, now)
                or now + timedelta(minutes=15)
            )
        return PublishError(
            ErrorKind.RATE_LIMITED, message, http_status=status, retry_at=when
        )
    if status >= 500:
        return PublishError(ErrorKind.TRANSIENT, message, http_status=status)
    if status == 401:
        return PublishError(
            ErrorKind.AUTH,
            f"{message}; the token is invalid or expired, re-authorise the account",
            http_status=status,
        )
    if status == 403 and problem.endswith(("client-forbidden", "unsupported-auth")):
        return PublishError(
            ErrorKind.CONFIG,
            f"{message}; the X app is not set up for this endpoint",
            http_status=status,
            platform_code=problem,
        )
    if status == 403:
        # Missing scope, suspended or locked account: a person must act.
        return PublishError(ErrorKind.AUTH, message, http_status=status)
    return PublishError(
        ErrorKind.INVALID, message, http_status=status, platform_code=problem or None
    )


def _token_error(response: httpx.Response) -> PublishError:
    status = response.status_code
    body = _json(response)
    reason = body.get("error_description") or body.get("error") or status
    if status == 429 or status >= 500:
        return _error(response, "refresh the access token")
    return PublishError(
        ErrorKind.AUTH,
        f"X refused to refresh the token ({status}: {reason}); re-authorise the "
        "account",
        http_status=status,
    )
