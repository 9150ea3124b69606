"""Drives the admin console (GET /ui) in headless Chromium against a running server, as an
operator would: create topics, produce and browse a record, upload a plugin, deploy it, see
the transformed record and the lag at 0, roll back to the first version, see a dead letter
with its reason; then, on a server with auth, a viewer cannot deploy. Writes a screenshot
of each page.

Usage: console.py URL FILTER_WASM SHOTS_DIR [AUTH_URL VIEWER_TOKEN ADMIN_TOKEN]
(Chromium is Debian's, driven by Playwright; scripts/setup installs both.)
"""

import json
import os
import re
import sys

from playwright.sync_api import expect, sync_playwright

url, wasm, shots = sys.argv[1:4]
os.makedirs(shots, exist_ok=True)


def shot(page, name):
    page.screenshot(path=os.path.join(shots, f"{name}.png"), full_page=True)


def visit(page, where, heading):
    """Goes to a page of the console and waits until it shows `heading`."""
    page.goto(f"{url}/ui#/{where}")
    expect(page.locator("h2")).to_have_text(heading)


def ok_message(page, text):
    expect(page.locator("#msg.ok")).to_contain_text(text, timeout=30_000)


def api(page, method, path, body):
    """A call to the public API from the page (with the page's token, if any)."""
    status = page.evaluate(
        """async ([method, path, body]) => {
             const headers = {'content-type': 'application/json'};
             const token = sessionStorage.getItem('sluice-token');
             if (token) headers.authorization = 'Bearer ' + token;
             return (await fetch(path, {method, headers, body: JSON.stringify(body)})).status;
           }""",
        [method, path, body],
    )
    assert 200 <= status < 300, f"{method} {path}: {status}"


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
        # The auth server has a self-signed certificate (the console works over TLS).
        page = browser.new_page(viewport={"width": 1280, "height": 900}, ignore_https_errors=True)
        page.on("dialog", lambda d: d.accept())

        # Topics: create two, produce a record, browse it.
        page.goto(f"{url}/ui#/topics")
        for name in ["events", "kept"]:
            page.fill("#create input[name=name]", name)
            page.click("#create button")
            ok_message(page, f"created topic {name}")
        page.click("text=events")
        page.fill("#produce textarea[name=value]", json.dumps({"action": "login", "user": "ann"}))
        page.fill("#produce input[name=key]", "u1")
        page.fill("#produce input[name=headers]", '{"trace":"t-1"}')
        page.click("#produce button")
        ok_message(page, "produced 1 record")
        page.fill("#produce textarea[name=value]", "not json")
        page.click("#produce button")
        ok_message(page, "produced 1 record")
        page.click("#seek button")
        expect(page.locator("#records")).to_contain_text('"user": "ann"')
        expect(page.locator("#records")).to_contain_text("trace: t-1")
        shot(page, "topic")

        # Seek by time: records stamped in 2020, 2021 and 2022; from mid-2020 on, the first
        # shown is 2021's.
        api(page, "POST", "/v1/topics", {"name": "timed"})
        stamps = {"y2020": 1577836800000, "y2021": 1609459200000, "y2022": 1640995200000}
        api(page, "POST", "/v1/topics/timed/records",
            {"records": [{"value": k, "timestamp": v} for k, v in stamps.items()]})
        visit(page, "topic/timed", "Topic timed")
        expect(page.locator("#records")).to_contain_text("y2020")
        page.fill("#seek input[name=time]", "2020-06-01T00:00:00")
        page.click("#seek button")
        expect(page.locator("#records tr").nth(1)).to_contain_text("y2021")
        expect(page.locator("#records")).not_to_contain_text("y2020")
        expect(page.locator("#seek input[name=offset]")).to_have_value("1")
        visit(page, "topics", "Topics")
        expect(page.locator("table").first).to_contain_text("events")
        shot(page, "topics")

        # Plugins: upload twice (two versions), deploy the filter from the first record on.
        page.goto(f"{url}/ui#/plugins")
        for (path, said) in [(wasm, "uploaded filter v1"), (os.environ["FILTER2_WASM"], "uploaded filter v2"),
                             (wasm, "filter v1 has these bytes already")]:
            page.fill("#upload input[name=name]", "filter")
            page.set_input_files("#upload input[type=file]", path)
            page.click("#upload button")
            ok_message(page, said)
        expect(page.locator("table").first).to_contain_text("v2")
        page.fill("#deploy input[name=name]", "logins")
        page.select_option("#deploy select[name=input]", "events")
        page.select_option("#deploy select[name=output]", "kept")
        page.fill("#deploy input[name=config]", '{"field":"action","value":"login"}')
        page.click("#deploy button")
        ok_message(page, "deployed logins")
        shot(page, "plugins")

        # The transform: lag goes to 0, the dead letter shows its reason; roll back to v1.
        page.goto(f"{url}/ui#/transform/logins")
        expect(page.locator("#lag")).to_have_text("0", timeout=30_000)
        page.reload()
        expect(page.locator("#dead")).to_contain_text("invalid JSON", timeout=30_000)
        page.select_option("#version", "1")
        page.click("#swap")
        ok_message(page, "logins now runs v1")
        expect(page.locator("#ver")).to_have_text("v1", timeout=30_000)
        shot(page, "transform")
        visit(page, "transforms", "Transforms")
        expect(page.locator("table").first).to_contain_text("logins")
        shot(page, "transforms")

        # Logs, followed live: a plugin that logs every record it sees.
        page.goto(f"{url}/ui#/plugins")
        page.fill("#upload input[name=name]", "chatty")
        page.set_input_files("#upload input[type=file]", os.environ["CHATTY_WASM"])
        page.click("#upload button")
        ok_message(page, "uploaded chatty")
        api(page, "POST", "/v1/topics", {"name": "chatter"})
        api(page, "PUT", "/v1/transforms/chatty", {"plugin": "chatty", "input": "timed",
            "outputs": ["chatter"], "config": {"mode": "log"}, "start": "latest"})
        page.goto(f"{url}/ui#/transform/chatty")
        expect(page.locator("h2")).to_contain_text("Transform chatty")
        page.check("#follow")
        for word in ["first-followed", "second-followed"]:
            api(page, "POST", "/v1/topics/timed/records", {"records": [{"value": word}]})
            expect(page.locator("#logs")).to_contain_text(f"saw {word}", timeout=30_000)
        shot(page, "logs")

        # A stateful transform: its watermark, state and timers per partition, and its state
        # browsed by key; pause and resume enabled by its status.
        page.goto(f"{url}/ui#/plugins")
        page.fill("#upload input[name=name]", "window-count")
        page.set_input_files("#upload input[type=file]", os.environ["WINDOW_WASM"])
        page.click("#upload button")
        ok_message(page, "uploaded window-count")
        api(page, "POST", "/v1/topics", {"name": "counted"})
        api(page, "PUT", "/v1/transforms/counts", {"plugin": "window-count", "input": "timed", "outputs": ["counted"]})
        page.goto(f"{url}/ui#/transform/counts")
        for _ in range(60):
            page.reload()
            keys = page.locator("#state tr").nth(1).locator("td").nth(4)
            if keys.count() and keys.inner_text() not in ("", "0"):
                break
            page.wait_for_timeout(500)
        expect(page.locator("#state tr").nth(1).locator("td").nth(1)).to_contain_text("20")
        expect(page.locator("#resume")).to_be_disabled()
        page.click("#state-browse button")
        expect(page.locator("#state-entries")).to_contain_text("window_end")
        expect(page.locator("#counters")).to_contain_text("records in")
        shot(page, "stateful")

        # A shadow: the same filter keeping logouts instead, compared record by record.
        api(page, "PUT", "/v1/transforms/logins/shadow",
            {"version": 1, "config": {"field": "action", "value": "logout"}})
        api(page, "POST", "/v1/topics/events/records",
            {"records": [{"value": '{"action":"login","user":"bo"}'}, {"value": '{"action":"logout","user":"cy"}'}]})
        page.goto(f"{url}/ui#/transform/logins")
        for _ in range(60):
            page.reload()
            cells = page.locator("#shadow-counts td")
            if cells.count() and cells.nth(2).inner_text() == "1" and cells.nth(3).inner_text() == "1":
                break
            page.wait_for_timeout(500)
        expect(page.locator("#shadow-counts")).to_contain_text("only live")
        expect(page.locator("#shadow-examples")).to_contain_text('"user":"cy"')
        shot(page, "shadow")
        page.click("#unshadow")
        ok_message(page, "dropped the shadow of logins")
        expect(page.locator("#shadow")).to_have_count(0)

        # The transformed record, browsed in its topic; its lineage leads back to `events`.
        visit(page, "topic/kept", "Topic kept")
        expect(page.locator("#records")).to_contain_text('"action": "login"')
        page.click("#records a[title=lineage]")
        expect(page.locator("h2")).to_contain_text("Lineage of kept/0@0")
        expect(page.locator("#hops")).to_contain_text("logins")
        expect(page.locator("#origin")).to_contain_text("events/0@0")
        shot(page, "lineage")
        page.click("#origin a")
        expect(page.locator("#derived")).to_contain_text("kept/0@0")
        page.goto(f"{url}/ui#/metrics")
        # The chart starts from the server's recent history: a line at once.
        expect(page.locator("#chart polyline").first).to_have_attribute("points", re.compile(r"\S+ \S+ \S+"), timeout=1_500)
        expect(page.locator("#rates")).to_contain_text("records in/s", timeout=10_000)
        # Batches ran: the latency table shows a bound for them since start.
        expect(page.locator("#latency")).to_contain_text("ms", timeout=10_000)
        expect(page.locator("#latency tr").nth(2)).to_contain_text("≤", timeout=10_000)
        shot(page, "metrics")

        # Consumer groups: one made by resetting its offsets (to the start of `events`, 4 records), and the
        # transform's own position; reset it to the end (a dry run first), then delete it.
        api(page, "POST", "/v1/groups/page-readers/reset", {"to": "earliest", "topic": "events"})
        visit(page, "groups", "Consumer groups")
        expect(page.locator("#groups")).to_contain_text("transform:logins")
        expect(page.locator("#groups tr", has_text="page-readers")).to_contain_text("Empty")
        page.click("text=page-readers")
        expect(page.locator("h2")).to_have_text("Group page-readers")
        expect(page.locator("#offsets tr").nth(1)).to_contain_text("events")
        expect(page.locator("#offsets tr").nth(1).locator("td").nth(4)).to_have_text("4")
        page.select_option("#reset select[name=to]", "latest")
        page.click("#reset button")
        expect(page.locator("#reset-result")).to_contain_text("events/0: 0 → 4")
        expect(page.locator("#offsets tr").nth(1).locator("td").nth(4)).to_have_text("4")
        page.uncheck("#reset input[name=dry]")
        page.click("#reset button")
        ok_message(page, "reset page-readers")
        expect(page.locator("#offsets tr").nth(1).locator("td").nth(4)).to_have_text("0")
        shot(page, "group")
        page.click("#delete-group")
        ok_message(page, "deleted page-readers")
        expect(page.locator("h2")).to_have_text("Consumer groups")
        expect(page.locator("#groups")).not_to_contain_text("page-readers")

        # Schemas: two versions of a subject, a topic that requires it, the diff between them.
        v1 = '{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}'
        v2 = ('{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},'
              '{"name":"note","type":["null","string"],"default":null}]}')
        for schema in (v1, v2):
            api(page, "POST", "/v1/registry/subjects/orders-value/versions", {"schema": schema})
        api(page, "POST", "/v1/topics", {"name": "orders", "schema": {"value": {"subject": "orders-value"}}})
        visit(page, "schemas", "Schemas")
        expect(page.locator("table")).to_contain_text("orders-value")
        expect(page.locator("table")).to_contain_text("BACKWARD")
        expect(page.locator("table tr").nth(1)).to_contain_text("orders")
        page.click("text=orders-value")
        expect(page.locator("h2")).to_have_text("Schema orders-value")
        expect(page.locator("pre.diff .added", has_text='"note"').first).to_be_visible()
        shot(page, "schemas")

        # With auth: a viewer sees but cannot deploy (disabled, and refused anyway).
        if len(sys.argv) > 4:
            auth_url, viewer, admin = sys.argv[4:7]
            page.goto(f"{auth_url}/ui#/topics")
            expect(page.locator("#msg.err")).to_contain_text("Bearer")
            page.evaluate(f"sessionStorage.setItem('sluice-token', {json.dumps(viewer)})")
            page.goto(f"{auth_url}/ui#/plugins")
            expect(page.locator("#who")).to_contain_text("(viewer)")
            expect(page.locator("#deploy button")).to_be_disabled()
            # The server refuses what the page disables.
            status = page.evaluate(
                """async () => (await fetch('/v1/transforms/x', {method: 'PUT',
                     headers: {'authorization': 'Bearer ' + sessionStorage.getItem('sluice-token'),
                               'content-type': 'application/json'},
                     body: '{"plugin":"p","input":"a","outputs":["b"]}'})).status"""
            )
            assert status == 403, status
            shot(page, "viewer")
            page.evaluate(f"sessionStorage.setItem('sluice-token', {json.dumps(admin)})")
            page.reload()
            expect(page.locator("#who")).to_contain_text("(admin)")
            expect(page.locator("#deploy button")).to_be_enabled()
        browser.close()
    print("console: all steps passed")


main()
