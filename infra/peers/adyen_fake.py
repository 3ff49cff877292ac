"""A small loopback fake of Adyen's Checkout API (v71 and v72, the same here), for Billy's tests; no fake exists on the
package registries. Written from Adyen's published API description, it speaks the same wire format
as the real service for what Billy uses:

- `POST /v72/payments` with a stored payment method (`ContAuth`, `Subscription`), answering
  `resultCode` Authorised / Refused / Error, then an AUTHORISATION notification;
- `POST /v72/payments/{pspReference}/refunds` and `/cancels`, answering 201 `received`, then a
  REFUND or CANCELLATION notification;
- `GET /v72/storedPaymentMethods?merchantAccount=&shopperReference=`;
- `x-api-key` authentication, the merchant account checked, `Idempotency-Key` honoured (the same
  key and body give the first answer again; the same key with another body is refused).

Notifications are posted as Adyen posts them (a batch body, `live: "false"`), each item signed
with Adyen's HMAC scheme by the official `Adyen` library (`Adyen.util.generate_notification_sig`),
and retried until the receiver answers `[accepted]`.

Test controls live under `/_test/`: register stored payment methods (with the outcome their
payments get), set the notification URL, hold notifications and release them, raise a chargeback,
and list what was asked of the fake.

    python adyen_fake.py --api-key KEY --merchant MERCHANT --hmac-key HEX [--port 0] [--delay-ms 200]

prints `listening <port>` once it accepts connections on 127.0.0.1.
"""

import argparse
import asyncio
import datetime
import hashlib
import json
import socket
import uuid

import aiohttp
from aiohttp import web
from Adyen.util import generate_notification_sig

REFUSALS = {
    "refused": ("2", "Refused"),
    "insufficient_funds": ("12", "Not enough balance"),
    "expired": ("6", "Expired Card"),
}


def error(status, code, message, kind="validation"):
    body = {"status": status, "errorCode": code, "message": message, "errorType": kind}
    return web.json_response(body, status=status)


def psp_reference():
    return uuid.uuid4().hex[:16].upper()


class Fake:
    def __init__(self, api_key, merchant, hmac_key, delay):
        self.api_key = api_key
        self.merchant = merchant
        self.hmac_key = hmac_key
        self.delay = delay
        self.stored = {}  # shopperReference -> [method]
        self.book = {}  # pspReference -> payment made
        self.modifications = []  # every refund or cancel asked for
        self.idempotency = {}  # key -> (body digest, status, answer)
        self.webhook_url = None
        self.hold = False
        self.held = []
        self.delivered = []  # bodies the receiver accepted
        self.tasks = set()

    # -- helpers ---------------------------------------------------------------------------------

    def authorised(self, request):
        return request.headers.get("x-api-key") == self.api_key

    async def idempotent(self, request, handler):
        """Runs `handler(body)` once per Idempotency-Key (and body)."""
        if not self.authorised(request):
            return error(401, "000", "HTTP Status Response - Unauthorized", "security")
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return error(400, "702", "Structure of the request is invalid")
        if body.get("merchantAccount") != self.merchant:
            return error(403, "901", "Invalid Merchant Account", "security")
        key = request.headers.get("Idempotency-Key")
        digest = hashlib.sha256(raw).hexdigest()
        if key is not None:
            if len(key) > 64:
                return error(422, "702", "Idempotency-Key is longer than 64 characters")
            if key in self.idempotency:
                seen_digest, status, answer = self.idempotency[key]
                if seen_digest != digest:
                    return error(422, "704", "request already processed or in progress")
                return web.json_response(answer, status=status, headers={"Idempotency-Key": key})
        status, answer = handler(body, request)
        if key is not None and status < 500:
            self.idempotency[key] = (digest, status, answer)
        return web.json_response(answer, status=status)

    def notify(self, item):
        """Signs one notification item and posts it (after the processing delay, unless held)."""
        item = dict(item)
        item.setdefault("merchantAccountCode", self.merchant)
        item["eventDate"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        signature = generate_notification_sig(item, self.hmac_key).decode()
        item["additionalData"] = {"hmacSignature": signature}
        body = {"live": "false", "notificationItems": [{"NotificationRequestItem": item}]}
        if self.hold:
            self.held.append(body)
            return
        task = asyncio.ensure_future(self.deliver(body, self.delay))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def deliver(self, body, delay):
        await asyncio.sleep(delay)
        if not self.webhook_url:
            return
        for attempt in range(5):
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.post(self.webhook_url, json=body) as response:
                        if response.status == 200 and (await response.text()) == "[accepted]":
                            self.delivered.append(body)
                            self.capture_reported(body)
                            return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2 * (attempt + 1))

    # -- Checkout API ----------------------------------------------------------------------------

    async def payments(self, request):
        return await self.idempotent(request, self.make_payment)

    def make_payment(self, body, _request):
        for field in ("amount", "reference", "paymentMethod", "shopperReference"):
            if field not in body:
                return 422, {"status": 422, "errorCode": "100", "message": f"Required field '{field}' is not provided.", "errorType": "validation"}
        if body.get("shopperInteraction") != "ContAuth" or body.get("recurringProcessingModel") not in ("Subscription", "UnscheduledCardOnFile"):
            return 422, {"status": 422, "errorCode": "702", "message": "a stored payment method is charged with ContAuth and a recurring model", "errorType": "validation"}
        amount = body["amount"]
        if not isinstance(amount.get("value"), int) or amount["value"] <= 0 or len(str(amount.get("currency", ""))) != 3:
            return 422, {"status": 422, "errorCode": "137", "message": "Invalid amount specified", "errorType": "validation"}
        method_id = body["paymentMethod"].get("storedPaymentMethodId")
        method = next((m for m in self.stored.get(body["shopperReference"], []) if m["id"] == method_id), None)
        if method is None:
            return 422, {"status": 422, "errorCode": "803", "message": "PaymentDetails not found", "errorType": "validation"}
        if body["paymentMethod"].get("type") != method["type"]:
            return 422, {"status": 422, "errorCode": "802", "message": "Invalid payment method type", "errorType": "validation"}
        if method["type"] == "pix" and amount["currency"] != "BRL":
            return 422, {"status": 422, "errorCode": "138", "message": "pix takes BRL only", "errorType": "validation"}
        if method["outcome"] == "error":
            return 200, {"pspReference": psp_reference(), "resultCode": "Error", "merchantReference": body["reference"]}
        psp = psp_reference()
        refused = REFUSALS.get(method["outcome"])
        self.book[psp] = {
            "pspReference": psp,
            "merchantReference": body["reference"],
            "amount": dict(amount),
            "shopperReference": body["shopperReference"],
            "status": "refused" if refused else "authorised",
            "captured": False,
            "refunded": 0,
        }
        item = {
            "pspReference": psp,
            "merchantReference": body["reference"],
            "amount": dict(amount),
            "eventCode": "AUTHORISATION",
            "success": "false" if refused else "true",
            "paymentMethod": "mc" if method["type"] == "scheme" else method["type"],
        }
        if refused:
            item["reason"] = refused[1]
        self.notify(item)
        answer = {"pspReference": psp, "resultCode": "Refused" if refused else "Authorised", "merchantReference": body["reference"], "amount": dict(amount)}
        if refused:
            answer["refusalReason"], answer["refusalReasonCode"] = refused[1], refused[0]
        return 200, answer

    async def refunds(self, request):
        return await self.idempotent(request, self.make_refund)

    def make_refund(self, body, request):
        payment = self.book.get(request.match_info["psp"])
        if payment is None or payment["status"] != "authorised":
            return 422, {"status": 422, "errorCode": "167", "message": "Original pspReference required for this operation", "errorType": "validation"}
        amount = body.get("amount") or {}
        if not isinstance(amount.get("value"), int) or amount["value"] <= 0 or amount.get("currency") != payment["amount"]["currency"]:
            return 422, {"status": 422, "errorCode": "137", "message": "Invalid amount specified", "errorType": "validation"}
        psp = psp_reference()
        self.modifications.append({"kind": "refund", "pspReference": psp, "paymentPspReference": payment["pspReference"], "amount": amount})
        remaining = payment["amount"]["value"] - payment["refunded"]
        success = amount["value"] <= remaining
        if success:
            payment["refunded"] += amount["value"]
        item = {
            "pspReference": psp,
            "originalReference": payment["pspReference"],
            "merchantReference": body.get("reference", ""),
            "amount": dict(amount),
            "eventCode": "REFUND",
            "success": "true" if success else "false",
        }
        if not success:
            item["reason"] = "Insufficient balance on payment"
        self.notify(item)
        return 201, {"merchantAccount": self.merchant, "paymentPspReference": payment["pspReference"], "pspReference": psp, "reference": body.get("reference"), "status": "received", "amount": amount}

    async def cancels(self, request):
        return await self.idempotent(request, self.make_cancel)

    def make_cancel(self, body, request):
        payment = self.book.get(request.match_info["psp"])
        if payment is None:
            return 422, {"status": 422, "errorCode": "167", "message": "Original pspReference required for this operation", "errorType": "validation"}
        psp = psp_reference()
        self.modifications.append({"kind": "cancel", "pspReference": psp, "paymentPspReference": payment["pspReference"]})
        # Payments are captured as their authorisation is reported; a cancel before that wins.
        success = payment["status"] == "authorised" and not payment["captured"]
        if success:
            payment["status"] = "cancelled"
        item = {
            "pspReference": psp,
            "originalReference": payment["pspReference"],
            "merchantReference": body.get("reference", ""),
            "amount": dict(payment["amount"]),
            "eventCode": "CANCELLATION",
            "success": "true" if success else "false",
        }
        if not success:
            item["reason"] = "Transaction already captured"
        self.notify(item)
        return 201, {"merchantAccount": self.merchant, "paymentPspReference": payment["pspReference"], "pspReference": psp, "reference": body.get("reference"), "status": "received"}

    async def stored_methods(self, request):
        if not self.authorised(request):
            return error(401, "000", "HTTP Status Response - Unauthorized", "security")
        if request.query.get("merchantAccount") != self.merchant:
            return error(403, "901", "Invalid Merchant Account", "security")
        shopper = request.query.get("shopperReference", "")
        shown = [{k: v for k, v in m.items() if k != "outcome"} for m in self.stored.get(shopper, [])]
        return web.json_response({"merchantAccount": self.merchant, "shopperReference": shopper, "storedPaymentMethods": shown})

    # -- test controls ---------------------------------------------------------------------------

    async def add_stored_method(self, request):
        body = await request.json()
        method = {
            "id": "SPM" + uuid.uuid4().hex[:13].upper(),
            "type": body.get("type", "scheme"),
            "brand": body.get("brand", "mc" if body.get("type", "scheme") == "scheme" else None),
            "lastFour": body.get("lastFour", ""),
            "expiryMonth": body.get("expiryMonth"),
            "expiryYear": body.get("expiryYear"),
            "supportedShopperInteractions": ["ContAuth"],
            "supportedRecurringProcessingModels": ["Subscription"],
            "outcome": body.get("outcome", "authorised"),
        }
        method = {k: v for k, v in method.items() if v is not None}
        self.stored.setdefault(body["shopperReference"], []).append(method)
        return web.json_response({"id": method["id"]})

    async def set_webhook(self, request):
        body = await request.json()
        self.webhook_url = body.get("url", self.webhook_url)
        self.hold = bool(body.get("hold", False))
        if not self.hold:
            for held in self.held:
                task = asyncio.ensure_future(self.deliver(held, 0))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            self.held = []
        return web.json_response({"url": self.webhook_url, "hold": self.hold})

    def capture_reported(self, body):
        """A payment counts as captured once its authorisation is reported; cancels come too late."""
        for wrapper in body["notificationItems"]:
            item = wrapper["NotificationRequestItem"]
            payment = self.book.get(item["pspReference"])
            if item["eventCode"] == "AUTHORISATION" and payment and payment["status"] == "authorised":
                payment["captured"] = True

    async def chargeback(self, request):
        payment = self.book.get(request.match_info["psp"])
        if payment is None:
            return error(404, "000", "no such payment")
        body = await request.json() if request.can_read_body else {}
        amount = body.get("amount") or dict(payment["amount"])
        self.notify({
            "pspReference": psp_reference(),
            "originalReference": payment["pspReference"],
            "merchantReference": payment["merchantReference"],
            "amount": amount,
            "eventCode": "CHARGEBACK",
            "success": "true",
            "reason": body.get("reason", "Fraud"),
        })
        return web.json_response({"ok": True})

    async def listing(self, _request):
        return web.json_response({
            "payments": list(self.book.values()),
            "modifications": self.modifications,
            "delivered": len(self.delivered),
            "held": len(self.held),
        })


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--merchant", required=True)
    parser.add_argument("--hmac-key", required=True)
    parser.add_argument("--delay-ms", type=int, default=200)
    args = parser.parse_args()
    fake = Fake(args.api_key, args.merchant, args.hmac_key, args.delay_ms / 1000)

    app = web.Application()
    for version in ("v71", "v72"):
        app.router.add_post(f"/{version}/payments", fake.payments)
        app.router.add_post(f"/{version}/payments/{{psp}}/refunds", fake.refunds)
        app.router.add_post(f"/{version}/payments/{{psp}}/cancels", fake.cancels)
        app.router.add_get(f"/{version}/storedPaymentMethods", fake.stored_methods)
    app.router.add_post("/_test/storedPaymentMethods", fake.add_stored_method)
    app.router.add_post("/_test/webhook", fake.set_webhook)
    app.router.add_post("/_test/chargebacks/{psp}", fake.chargeback)
    app.router.add_get("/_test/state", fake.listing)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    # Listening before the announcement: connections wait in the backlog until the app serves.
    sock.listen(128)

    async def announce(_app):
        print(f"listening {sock.getsockname()[1]}", flush=True)

    app.on_startup.append(announce)
    web.run_app(app, sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()
