"""Checks that the Adyen fake speaks Adyen's wire format, by driving it with Adyen's official
Python library (its Checkout client, pointed at the fake) and verifying every notification the
fake sends with the library's own HMAC check. Run by `make test` before the Rust tests use the fake.

    python check_adyen_fake.py
"""

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import Adyen
from Adyen.util import is_valid_hmac_notification
from aiohttp import web

HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
API_KEY = "check-api-key"
MERCHANT = "BillyCheck"


def start_fake():
    fake = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("adyen_fake.py")), "--api-key", API_KEY,
         "--merchant", MERCHANT, "--hmac-key", HMAC_KEY, "--delay-ms", "50"],
        stdout=subprocess.PIPE, text=True,
    )
    port = int(fake.stdout.readline().split()[1])
    return fake, port


async def main():
    received = []

    async def receive(request):
        received.append(await request.json())
        return web.Response(text="[accepted]")

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_port = site._server.sockets[0].getsockname()[1]

    fake, port = start_fake()
    try:
        base = f"http://127.0.0.1:{port}"
        adyen = Adyen.Adyen(xapikey=API_KEY, platform="test")
        for service in (adyen.checkout.payments_api, adyen.checkout.modifications_api, adyen.checkout.recurring_api):
            service.baseUrl = f"{base}/v72"
        loop = asyncio.get_running_loop()

        def call(fn, *args, **kwargs):
            return loop.run_in_executor(None, lambda: fn(*args, **kwargs))

        import aiohttp
        async with aiohttp.ClientSession() as http:
            await http.post(f"{base}/_test/webhook", json={"url": f"http://127.0.0.1:{hook_port}/hook"})
            stored = await (await http.post(f"{base}/_test/storedPaymentMethods", json={
                "shopperReference": "shopper-1", "lastFour": "1111", "expiryMonth": "03", "expiryYear": "2030"})).json()

        listed = await call(adyen.checkout.recurring_api.get_tokens_for_stored_payment_details,
                            query_parameters={"merchantAccount": MERCHANT, "shopperReference": "shopper-1"})
        assert listed.message["storedPaymentMethods"][0]["id"] == stored["id"], listed.message

        request = {
            "amount": {"value": 1000, "currency": "EUR"}, "merchantAccount": MERCHANT, "reference": "check-1",
            "paymentMethod": {"type": "scheme", "storedPaymentMethodId": stored["id"]},
            "shopperReference": "shopper-1", "shopperInteraction": "ContAuth", "recurringProcessingModel": "Subscription",
        }
        paid = await call(adyen.checkout.payments_api.payments, request, idempotency_key="check-key-1")
        assert paid.message["resultCode"] == "Authorised", paid.message
        again = await call(adyen.checkout.payments_api.payments, request, idempotency_key="check-key-1")
        assert again.message["pspReference"] == paid.message["pspReference"], "the same key answers the same"
        psp = paid.message["pspReference"]
        await asyncio.sleep(0.3)
        refund = await call(adyen.checkout.modifications_api.refund_captured_payment,
                            {"amount": {"value": 400, "currency": "EUR"}, "merchantAccount": MERCHANT, "reference": "r-1"},
                            psp, idempotency_key="check-refund-1")
        assert refund.status_code == 201 and refund.message["status"] == "received", refund.message
        cancel = await call(adyen.checkout.modifications_api.cancel_authorised_payment_by_psp_reference,
                            {"merchantAccount": MERCHANT, "reference": "c-1"}, psp, idempotency_key="check-cancel-1")
        assert cancel.message["status"] == "received", cancel.message

        deadline = time.monotonic() + 10
        while len(received) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        codes = []
        for body in received:
            assert body["live"] == "false"
            for wrapper in body["notificationItems"]:
                item = wrapper["NotificationRequestItem"]
                assert is_valid_hmac_notification(item, HMAC_KEY), item
                codes.append((item["eventCode"], item["success"]))
        assert sorted(codes) == [("AUTHORISATION", "true"), ("CANCELLATION", "false"), ("REFUND", "true")], codes
        print("adyen fake: payments, refunds, cancels, stored methods and signed notifications match Adyen's library")
    finally:
        fake.terminate()
        fake.wait(timeout=10)
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
