"""Instagram: the Graph API content-publishing flow (Instagram via Facebook Login).

A post becomes a media container (see `instagram_containers`), Meta fetches
and processes the media while we poll the container's `status_code`, and `POST
/{ig-user-id}/media_publish?creation_id=…` makes it visible. The parent
container id is saved through the `HandleStore` as soon as it exists, so that
after an unknown outcome `reconcile` can read it: a container reports
`PUBLISHED` once it is live, which is Instagram's only duplicate guard.

Options read from `post.options`: `alt_text` (single image only).
Credentials: `account_id` is the Instagram professional account's IG user id;
the token is a Facebook user (or page) access token sent as a Bearer header,
so it never appears in a URL or a log line.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import httpx

from tasks.adapters import graph
from tasks.adapters.base import (
    Adapter,
    Credentials,
    ErrorKind,
    HandleStore,
    Post,
    Published,
    PublishError,
    RefreshOnce,
)
from tasks.adapters.instagram_containers import (
    AlreadyPublished,
    ContainerGone,
    create_container,
    read_status,
    wait_finished,
)
from tasks.adapters.instagram_errors import (
    INSTAGRAM,
    RECREATE_SUBCODES,
    instagram_rules,
)

logger = logging.getLogger(__name__)

DEFAULT_API_VERSION = "v23.0"
CONTAINER_HANDLE = "instagram_container_id"

MAX_CAPTION_CHARS = 2200
MAX_HASHTAGS = 30
CAROUSEL_MIN, CAROUSEL_MAX = 2, 10
# A Graph hashtag: "#" then word characters, as Instagram links them.
HASHTAG = re.compile(r"(?<![\w&])#\w+")


class InstagramAdapter(Adapter):
    """Publishes images, reels and carousels to an Instagram professional account."""

    platform = "instagram"
    default_base_url = "https://graph.facebook.com"

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str | None = None,
        *,
        api_version: str = DEFAULT_API_VERSION,
        poll_interval: float = 3.0,
        poll_timeout: float = 300.0,
        check_quota: bool = True,
        daily_cap_wait: timedelta = timedelta(hours=1),
    ) -> None:
        super().__init__(client, base_url)
        self.api_version = api_version.strip("/")
        self.poll_interval = poll_interval
        self.poll_timeout = poll_timeout
        self.check_quota = check_quota
        # The cap is a rolling 24 h window and the API does not say when the
        # oldest post leaves it, so a capped post is looked at again hourly.
        self.daily_cap_wait = daily_cap_wait
        self.rules = instagram_rules(daily_cap_wait)

    def _session(self, credentials: Credentials) -> graph.GraphSession:
        root = self.url(f"/{self.api_version}")
        return graph.GraphSession(
            self, root, RefreshOnce(credentials), INSTAGRAM, self.rules
        )

    def validate(self, post: Post) -> None:
        def invalid(message: str) -> PublishError:
            return PublishError(ErrorKind.INVALID, f"Instagram: {message}")

        if not post.media_urls:
            raise invalid("a post needs an image or a video; text-only is impossible")
        if len(post.media_urls) > CAROUSEL_MAX:
            raise invalid(
                f"a carousel holds {CAROUSEL_MIN}-{CAROUSEL_MAX} items, "
                f"this post has {len(post.media_urls)}"
            )
        for url in post.media_urls:
            if httpx.URL(url).scheme not in ("http", "https"):
                raise invalid(f"media must be at a public http(s) URL, not {url!r}")
        if len(post.text) > MAX_CAPTION_CHARS:
            raise invalid(
                f"the caption has {len(post.text)} characters, "
                f"the limit is {MAX_CAPTION_CHARS}"
            )
        hashtags = len(HASHTAG.findall(post.text))
        if hashtags > MAX_HASHTAGS:
            raise invalid(
                f"the caption has {hashtags} hashtags, at most 30 are allowed"
            )

    async def publish(
        self, post: Post, credentials: Credentials, handles: HandleStore
    ) -> Published:
        self.validate(post)
        account = _account(credentials)
        session = self._session(credentials)

        container_id: str | None = post.handles.get(CONTAINER_HANDLE)
        if container_id:
            status = await read_status(session, container_id)
            if status == "PUBLISHED":
                return await self._find_published(
                    session, account, post, str(container_id)
                )
            if status in ("FINISHED", "IN_PROGRESS"):
                # Reusing the container spends no new one of the 400 a day
                # and keeps a single candidate for reconciliation.
                logger.info(
                    "event=instagram.container_reused post=%s container=%s",
                    post.id,
                    container_id,
                )
            else:
                container_id = None

        if self.check_quota:
            await self._check_quota(session, account)

        for attempt in (1, 2):
            try:
                if container_id is None:
                    container_id = await create_container(
                        session,
                        account,
                        post,
                        poll_interval=self.poll_interval,
                        poll_timeout=self.poll_timeout,
                    )
                    await handles.save(CONTAINER_HANDLE, container_id)
                await wait_finished(
                    session,
                    container_id,
                    poll_interval=self.poll_interval,
                    poll_timeout=self.poll_timeout,
                )
                media_id = await self._media_publish(session, account, container_id)
            except ContainerGone:
                if attempt == 2:
                    raise PublishError(
                        ErrorKind.TRANSIENT,
                        f"Instagram expired container {container_id} twice in a "
                        "row; retrying later with a new one",
                    ) from None
                container_id = None
                continue
            except AlreadyPublished:
                return await self._find_published(
                    session, account, post, str(container_id)
                )
            break

        url = await self._permalink(session, media_id)
        logger.info(
            "event=instagram.published post=%s media_id=%s container=%s",
            post.id,
            media_id,
            container_id,
        )
        return Published(media_id, url)

    async def reconcile(self, post: Post, credentials: Credentials) -> Published | None:
        """Read the saved container: `PUBLISHED` means live, anything else not.

        Without a saved container nothing can have been published, since the
        id is saved before `media_publish` is ever sent.
        """
        container_id = post.handles.get(CONTAINER_HANDLE)
        if not container_id:
            return None
        session = self._session(credentials)
        status = await read_status(session, container_id)
        if status != "PUBLISHED":
            return None
        return await self._find_published(
            session, _account(credentials), post, container_id
        )

    async def _media_publish(
        self, session: graph.GraphSession, account: str, container_id: str
    ) -> str:
        try:
            body = await session.call(
                "POST",
                f"{account}/media_publish",
                params={"creation_id": container_id},
                creates=True,
            )
        except graph.GraphFailure as exc:
            if exc.graph.subcode in RECREATE_SUBCODES:
                raise ContainerGone from exc
            # A refusal may mean an earlier request already published this
            # container: the container itself knows.
            refused = exc.kind in (ErrorKind.INVALID, ErrorKind.TRANSIENT)
            if refused and await read_status(session, container_id) == "PUBLISHED":
                raise AlreadyPublished from exc
            raise

        media_id = body.get("id")
        if not media_id:
            raise PublishError(
                ErrorKind.UNKNOWN_OUTCOME,
                f"Instagram answered media_publish for container {container_id} "
                "without a media id; it may be live: reconcile before retrying",
            )
        return str(media_id)

    async def _permalink(
        self, session: graph.GraphSession, media_id: str
    ) -> str | None:
        """The post's permalink; None if it cannot be read (the post is live)."""
        try:
            body = await session.call("GET", media_id, params={"fields": "permalink"})
        except PublishError as exc:
            logger.warning(
                "instagram permalink unavailable media_id=%s kind=%s",
                media_id,
                exc.kind.value,
            )
            return None
        permalink = body.get("permalink")
        return str(permalink) if permalink else None

    async def _check_quota(self, session: graph.GraphSession, account: str) -> None:
        """Defer the post while the account's 24 h publishing quota is used up."""
        try:
            body = await session.call(
                "GET",
                f"{account}/content_publishing_limit",
                params={"fields": "quota_usage,config"},
            )
        except graph.GraphFailure as exc:
            if exc.kind in (ErrorKind.AUTH, ErrorKind.RATE_LIMITED):
                raise
            # The check is an optimisation: media_publish enforces the cap too.
            logger.debug("instagram quota check skipped: %s", exc.platform_code)
            return

        try:
            entry = body["data"][0]
            used = int(entry["quota_usage"])
            total = int(entry["config"]["quota_total"])
        except (KeyError, IndexError, TypeError, ValueError):
            logger.debug("instagram quota answer not understood; skipping the check")
            return
        if used >= total:
            raise PublishError(
                ErrorKind.RATE_LIMITED,
                f"Instagram account {account} published {used} of its {total} "
                "posts allowed in 24 h; deferred until the window frees",
                retry_at=datetime.now(UTC) + self.daily_cap_wait,
                platform_code="content_publishing_limit",
            )

    async def _find_published(
        self, session: graph.GraphSession, account: str, post: Post, container_id: str
    ) -> Published:
        """The live media of a PUBLISHED container, matched by caption.

        A container does not name the media it became, so the account's recent
        media are searched for the caption. If none matches (the owner edited
        it), the post is still live: the container id stands in as remote id.
        """
        body = await session.call(
            "GET",
            f"{account}/media",
            params={"fields": "id,caption,permalink,timestamp", "limit": "25"},
        )
        items = body.get("data")
        for item in items if isinstance(items, list) else []:
            if (
                isinstance(item, dict)
                and item.get("id")
                and (item.get("caption") or "") == post.text
            ):
                logger.info(
                    "event=instagram.reconciled post=%s media_id=%s container=%s",
                    post.id,
                    item["id"],
                    container_id,
                )
                return Published(str(item["id"]), item.get("permalink"))

        logger.warning(
            "event=instagram.reconciled_without_media post=%s container=%s",
            post.id,
            container_id,
        )
        return Published(container_id, None)


def _account(credentials: Credentials) -> str:
    if not credentials.account_id:
        raise PublishError(
            ErrorKind.CONFIG,
            "Instagram credentials have no account_id: set the IG user id of "
            "the professional account",
        )
    return credentials.account_id
