"""Admin routes behind the admin token: accounts, keys, account status."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from distillery import store
from distillery.gateway.auth import check_admin
from distillery.gateway.errors import APIError
from distillery.gateway.openapi import ADMIN_ERRORS
from distillery.store.models import ACCOUNT_STATUSES

router = APIRouter(prefix="/admin", responses=ADMIN_ERRORS)
MAX_LIMIT = 2**31 - 1  # the columns are 32-bit integers


class NewAccount(BaseModel):
    name: str = Field(min_length=1, max_length=128)


class NewKeyBody(BaseModel):
    account: str = Field(min_length=1, max_length=128)
    name: str | None = Field(None, max_length=128)
    rpm_limit: int | None = Field(None, ge=1, le=MAX_LIMIT)
    tpm_limit: int | None = Field(None, ge=1, le=MAX_LIMIT)


class StatusBody(BaseModel):
    status: Literal[ACCOUNT_STATUSES]  # type: ignore[valid-type]
    reason: str | None = Field(None, max_length=1000)


async def _call(request: Request, fn, *args, **kw):
    gw = request.app.state.gateway
    check_admin(gw.config.admin_token, request.headers.get("authorization"))
    try:
        out = await asyncio.to_thread(fn, gw.db, *args, **kw)
    except KeyError as e:
        raise APIError(404, str(e.args[0]), "not_found") from None
    except ValueError as e:
        raise APIError(400, str(e), "invalid_value") from None
    gw.auth.invalidate()  # statuses and revocations apply now in this process
    return out


def _as_dict(obj) -> dict:
    d = dict(obj.__dict__)
    for k, v in d.items():
        if hasattr(v, "isoformat"):
            d[k] = v.isoformat()
    return d


@router.post("/accounts", status_code=201)
async def create_account(body: NewAccount, request: Request):
    return _as_dict(await _call(request, store.create_account, body.name))


@router.get("/accounts")
async def list_accounts(request: Request):
    return {"data": [_as_dict(a) for a in await _call(request, store.list_accounts)]}


@router.put("/accounts/{name}/status")
async def set_status(name: str, body: StatusBody, request: Request):
    return _as_dict(await _call(request, store.set_status, name, body.status, body.reason))


@router.post("/keys", status_code=201)
async def create_key(body: NewKeyBody, request: Request):
    new = await _call(request, store.create_key, body.account, body.name, body.rpm_limit,
                      body.tpm_limit)
    return {**_as_dict(new.info), "key": new.secret}  # shown once


@router.get("/keys")
async def list_keys(request: Request, account: str | None = None):
    return {"data": [_as_dict(k) for k in await _call(request, store.list_keys, account)]}


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: str, request: Request):
    return _as_dict(await _call(request, store.revoke_key, key_id))
