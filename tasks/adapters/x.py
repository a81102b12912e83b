"""X (API v2): posts through `POST /2/tweets`, media through `/2/media/upload`.

Media go up first (see `x_media`); the time the create request was first sent
is saved (`x_sent_at`) so an unknown outcome can be reconciled against the
account's recent posts. Errors are classified in `x_errors`.
"""

from __future__ import annotations

import html
import logging
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tasks.adapters.base import (
    SEARCH_LAG_SECONDS,
    Adapter,
    Credentials,
    ErrorKind,
    HandleStore,
    Post,
    Published,
    PublishError,
    RefreshOnce,
    TokenGrant,
    json_object,
    parse_time,
)
from tasks.adapters.media import content_type_from_url, media_kind
from tasks.adapters.x_errors import classify, is_duplicate, token_error
from tasks.adapters.x_media import (
    CHUNK_BYTES,
    check_media_mix,
    saved_media_ids,
    upload_all,
)
from tasks.adapters.x_text import MAX_WEIGHTED_LENGTH, find_urls, weighted_length

logger = logging.getLogger(__name__)

# Posts created a little before our clock said we sent (clock skew) still count.
CLOCK_SKEW = timedelta(minutes=2)
RECONCILE_PAGES = 5


class XAdapter(Adapter):
    """Publishes to X with an OAuth 2 user token (`Credentials.account_id` =
    the X user id, used to look posts up after an unknown outcome)."""

    platform = "x"
    search_lag = SEARCH_LAG_SECONDS
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
        check_media_mix(kinds)

    async def publish(
        self, post: Post, credentials: Credentials, handles: HandleStore
    ) -> Published:
        self.validate(post)
        attempt = RefreshOnce(credentials)
        media_ids = await upload_all(self, post, attempt, handles)

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

        response = await self.call(
            attempt, "POST", "/2/tweets", creates=True, json=body
        )
        if response.status_code == 403 and is_duplicate(response):
            return await self._after_duplicate(post, attempt.credentials, sent_before)
        if response.is_error:
            raise classify(response, "create the post")

        tweet_id = json_object(response).get("data", {}).get("id")
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
        sent_at = parse_time(post.handles.get("x_sent_at"))
        if sent_at is None:
            return None  # the create request was never sent

        attempt = RefreshOnce(credentials)
        user_id = credentials.account_id or await self._user_id(attempt)
        wanted_text = _comparable(post.text)
        wanted_media = saved_media_ids(post)

        params: dict[str, Any] = {
            "start_time": (sent_at - CLOCK_SKEW).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "max_results": 100,
            "tweet.fields": "created_at,attachments",
        }
        for _ in range(RECONCILE_PAGES):
            response = await self.call(
                attempt, "GET", f"/2/users/{user_id}/tweets", params=params
            )
            if response.is_error:
                # Not being able to look is not an answer: the post may be live.
                error = classify(response, "look up recent posts")
                raise PublishError(
                    ErrorKind.UNKNOWN_OUTCOME,
                    f"{error.message}; check the account before retrying",
                    http_status=error.http_status,
                    retry_at=error.retry_at,
                )
            page = json_object(response)
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
            raise token_error(response)
        body = json_object(response)
        if not isinstance(body.get("access_token"), str):
            raise PublishError(
                ErrorKind.TRANSIENT, "X's token endpoint answered without a token"
            )
        return TokenGrant(
            access_token=body["access_token"],
            refresh_token=body.get("refresh_token") or refresh_token,
            expires_in=body.get("expires_in"),
        )

    async def call(
        self,
        attempt: RefreshOnce,
        method: str,
        path: str,
        *,
        creates: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """One authorised request; on a 401, refresh once and send it again."""
        while True:
            headers = {"Authorization": attempt.authorization}
            response = await self.request(
                method, self.url(path), creates=creates, headers=headers, **kwargs
            )
            if response.status_code != 401 or not await attempt.refresh():
                return response
            logger.info("event=x.token_refreshed path=%s", path)

    async def _user_id(self, attempt: RefreshOnce) -> str:
        response = await self.call(attempt, "GET", "/2/users/me")
        user_id = json_object(response).get("data", {}).get("id")
        if response.is_error or not isinstance(user_id, str):
            raise PublishError(
                ErrorKind.UNKNOWN_OUTCOME,
                "cannot tell which X account to search: no account id stored and "
                f"GET /2/users/me answered {response.status_code}",
            )
        return user_id


def permalink(tweet_id: str) -> str:
    return f"https://x.com/i/web/status/{tweet_id}"


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
