"""b24pysdk (1.3.x), unmodified, against a real `leadflow serve` behind a TLS terminator.

    LEADFLOW_DOMAIN=127.0.0.1:PORT LEADFLOW_WEBHOOK=1/SECRET REQUESTS_CA_BUNDLE=cert.pem \
        python b24pysdk_client.py

b24pysdk only calls `https://{domain}/rest/{user}/{secret}/{method}.json` (a JSON POST through
requests), so the Rust test (cli/tests/python_clients.rs) puts tls_proxy.py in front of the
plain-HTTP service and trusts its self-signed certificate through REQUESTS_CA_BUNDLE.

Adds 61 leads (60 through `call_batches`, which sends two `batch` requests, and one with
`crm.lead.add`), updates one and reads it back, lists them with `%TITLE` and `STATUS_ID`
filters over more than one page (`as_list()`: the first page, then `batch` commands with
`start`; `as_list_fast()`: `start=-1` pages chained by `$result[…]` references), adds deals
in the `services` pipeline (`CATEGORY_ID` 1, `C1:` stage ids) and one in `goods`, lists the
pipeline's deals and the deal categories, runs a `batch`, and checks the errors of an unknown
method: `BitrixAPINotFound` (HTTP 404, `ERROR_METHOD_NOT_FOUND`) for a direct call,
`ERROR_METHOD_NOT_FOUND` in `result_error` inside a batch.

`python b24pysdk_client.py batch-order` checks only that a `batch` runs its commands in the
order sent, whatever their labels (a list of 12 requests); `typed-fields`, that b24pysdk's
typed answers (`.value`) of `user.current` and `crm.*.fields` parse.

Exits non-zero on the first mismatch (a plain assert naming it). The last line of stdout is a
JSON summary the Rust test checks against the log:
`{"leads": [ids], "deals": {"services": [ids], "goods": [ids]}}`.
"""

import json
import os
import re
import sys

from b24pysdk import BitrixWebhook, Client
from b24pysdk.errors import BitrixAPIBadRequest, BitrixAPIInvalidArgValue, BitrixAPINotFound

PREFIX = "sdk-"


def digits(s):
    return re.sub(r"\D", "", s)


def main():
    token = BitrixWebhook(domain=os.environ["LEADFLOW_DOMAIN"], webhook_token=os.environ["LEADFLOW_WEBHOOK"])
    client = Client(token)
    crm = client.crm

    me = client.user.current().result
    assert me["ID"] == str(token.user_id), f"user.current: {me!r}"

    # --- add: 60 leads through call_batches (50 + 10 commands), one alone, one other.
    adds = {
        f"add{i:02}": crm.lead.add(
            {
                "TITLE": f"{PREFIX}{i:02}",
                "NAME": f"Client {i}",
                "STATUS_ID": "NEW",
                "SOURCE_ID": "CALL",
                "PHONE": [{"VALUE": f"+7 900 200-00-{i:02}", "VALUE_TYPE": "WORK"}],
            }
        )
        for i in range(60)
    }
    batch = client.call_batches(adds).result
    assert not batch.result_error, f"60 adds: {batch.result_error!r}"
    assert set(batch.result) == set(adds), f"one answer per label: {sorted(batch.result)!r}"
    ids = {f"{PREFIX}{label[3:]}": i for label, i in batch.result.items()}
    assert all(isinstance(i, int) and i > 0 for i in ids.values()), f"ids are integers: {ids!r}"
    assert len(set(ids.values())) == 60, f"60 distinct ids: {ids!r}"
    single = crm.lead.add({"TITLE": f"{PREFIX}single", "NAME": "Solo", "EMAIL": [{"VALUE": "solo@example.com"}]}).result
    assert isinstance(single, int) and single not in ids.values(), f"one add answered {single!r}"
    ids[f"{PREFIX}single"] = single
    other = crm.lead.add({"TITLE": "someone else", "NAME": "Other"}).result
    assert isinstance(other, int), f"other add answered {other!r}"
    ours = set(ids.values())

    # --- update: a title, a responsible and a stage move (in_work needs a responsible and a
    # phone), then get it back.
    target = ids[f"{PREFIX}05"]
    ok = crm.lead.update(target, {"TITLE": f"{PREFIX}05 updated", "ASSIGNED_BY_ID": 1, "STATUS_ID": "IN_PROCESS"}).result
    assert ok is True, f"update answered {ok!r}"
    rec = crm.lead.get(target).result
    assert rec["ID"] == str(target), f"ID: {rec['ID']!r}"
    assert rec["TITLE"] == f"{PREFIX}05 updated", f"TITLE after update: {rec['TITLE']!r}"
    assert rec["STATUS_ID"] == "IN_PROCESS", f"STATUS_ID after update: {rec['STATUS_ID']!r}"
    assert rec["ASSIGNED_BY_ID"] == "1", f"ASSIGNED_BY_ID after update: {rec['ASSIGNED_BY_ID']!r}"
    assert rec["SOURCE_ID"] == "CALL", f"SOURCE_ID kept: {rec['SOURCE_ID']!r}"
    phones = rec.get("PHONE") or []
    assert len(phones) == 1 and digits(phones[0]["VALUE"]) == "79002000005", f"PHONE: {phones!r}"

    history = crm.stagehistory.list(1, filter={"OWNER_ID": target}).as_list().result
    assert [h["STATUS_ID"] for h in history] == ["NEW", "IN_PROCESS"], f"stage history: {history!r}"
    comment = crm.timeline.comment.add({"ENTITY_ID": target, "ENTITY_TYPE": "lead", "COMMENT": "called back"}).result
    assert isinstance(comment, int), f"timeline comment: {comment!r}"
    # As in Bitrix24, a timeline comment is an entry of its own: the lead's COMMENTS stay.
    assert "called back" not in (crm.lead.get(target).result.get("COMMENTS") or ""), "COMMENTS unchanged"

    # --- lists with filters, more than one page.
    select = ["ID", "TITLE", "STATUS_ID"]
    first = crm.lead.list(filter={"%TITLE": PREFIX}, select=select)
    assert len(first.result) == 50, f"a page holds 50: {len(first.result)}"
    assert first.response.total == 61 and first.response.next == 50, f"total/next: {first.response!r}"
    rows = crm.lead.list(filter={"%TITLE": PREFIX}, select=select).as_list().result
    assert len(rows) == 61, f"as_list: 61 rows, got {len(rows)}"
    assert {int(r["ID"]) for r in rows} == ours, "as_list: exactly our leads"
    fast = list(crm.lead.list(filter={"%TITLE": PREFIX}, select=select).as_list_fast().result)
    assert [r["ID"] for r in fast] == sorted((r["ID"] for r in rows), key=int), "as_list_fast: the same, by ID"
    back = [r["ID"] for r in crm.lead.list(filter={"%TITLE": PREFIX}, select=["ID"]).as_list_fast(descending=True).result]
    assert back == [r["ID"] for r in reversed(fast)], "as_list_fast(descending=True): the same, by ID descending"
    desc = crm.lead.list(filter={"%TITLE": PREFIX}, order={"ID": "DESC"}, select=["ID"]).result
    assert [r["ID"] for r in desc] == back[:50], "order ID DESC: the last 50 first"
    new = crm.lead.list(filter={"%TITLE": PREFIX, "STATUS_ID": "NEW"}, select=["ID"]).as_list().result
    assert {int(r["ID"]) for r in new} == ours - {target}, f"STATUS_ID NEW: {len(new)} rows"
    moved = crm.lead.list(filter={"%TITLE": PREFIX, "STATUS_ID": "IN_PROCESS"}, select=["ID", "TITLE"]).as_list().result
    assert [(int(r["ID"]), r["TITLE"]) for r in moved] == [(target, f"{PREFIX}05 updated")], f"IN_PROCESS: {moved!r}"
    limited = crm.lead.list(filter={"%TITLE": PREFIX}, select=["ID"]).as_list(limit=55).result
    assert len(limited) == 55, f"as_list(limit=55): {len(limited)}"

    ok = crm.lead.delete(other).result
    assert ok is True, f"delete answered {ok!r}"
    try:
        crm.lead.get(other).result
        raise AssertionError("a deleted lead answered")
    except BitrixAPIBadRequest as e:
        assert e.error_description == "Not found", f"a deleted lead: {e.json_response!r}"
    try:
        crm.lead.list(filter={"NO_SUCH_FIELD": 1}).result
        raise AssertionError("a filter on an unknown field answered")
    except BitrixAPIInvalidArgValue as e:
        assert "NO_SUCH_FIELD" in e.error_description, f"the message names the field: {e.error_description!r}"

    # --- deals: the categories, three in services (CATEGORY_ID 1, C1: stages), one in goods.
    categories = crm.category.list(2).result
    cats = {c["id"]: c for c in categories["categories"]}
    assert 0 in cats and 1 in cats, f"deal categories: {categories!r}"
    deals = {}
    for i in range(3):
        deals[f"{PREFIX}deal-{i}"] = crm.deal.add(
            {"TITLE": f"{PREFIX}deal-{i}", "CATEGORY_ID": 1, "STAGE_ID": "C1:NEW", "OPPORTUNITY": 2000 + i}
        ).result
    stages = [s["STATUS_ID"] for s in crm.status.list(filter={"ENTITY_ID": "DEAL_STAGE_1"}).result]
    assert stages == ["C1:NEW", "C1:MEASUREMENT", "C1:CONTRACT", "C1:WON", "C1:LOSE"], f"DEAL_STAGE_1: {stages!r}"
    goods = crm.deal.add({"TITLE": f"{PREFIX}goods-deal", "CATEGORY_ID": 0}).result
    moving = deals[f"{PREFIX}deal-1"]
    ok = crm.deal.update(moving, {"STAGE_ID": "C1:MEASUREMENT"}).result
    assert ok is True, f"deal update answered {ok!r}"
    dsel = ["ID", "TITLE", "CATEGORY_ID", "STAGE_ID", "OPPORTUNITY"]
    pipeline = crm.deal.list(filter={"CATEGORY_ID": 1}, select=dsel).as_list().result
    stages = sorted((d["TITLE"], int(d["ID"]), d["CATEGORY_ID"], d["STAGE_ID"]) for d in pipeline)
    expected = sorted(
        (t, i, "1", "C1:MEASUREMENT" if i == moving else "C1:NEW") for t, i in deals.items()
    )
    assert stages == expected, f"CATEGORY_ID 1: {stages!r}"
    got = crm.deal.get(goods).result
    assert (got["CATEGORY_ID"], got["STAGE_ID"]) == ("0", "NEW"), f"goods deal: {got!r}"
    assert crm.deal.get(deals[f"{PREFIX}deal-2"]).result["OPPORTUNITY"] == "2002.00", "OPPORTUNITY"

    # --- batch: named requests answered by label.
    res = client.call_batch(
        {
            "lead": crm.lead.get(target),
            "deals": crm.deal.list(filter={"CATEGORY_ID": 1, "STAGE_ID": "C1:MEASUREMENT"}, select=["ID"]),
            "fields": crm.lead.fields(),
        }
    ).result
    assert not res.result_error, f"batch errors: {res.result_error!r}"
    assert res.result["lead"]["TITLE"] == f"{PREFIX}05 updated", f"batch lead: {res.result['lead']!r}"
    assert [int(d["ID"]) for d in res.result["deals"]] == [moving], f"batch deals: {res.result['deals']!r}"
    assert res.result_total["deals"] == 1, f"batch result_total: {res.result_total!r}"
    assert "TITLE" in res.result["fields"], f"batch fields: {sorted(res.result['fields'])!r}"

    # --- the error of an unknown method.
    try:
        token.call_method("no.such.method")
        raise AssertionError("an unknown method answered")
    except BitrixAPINotFound as e:
        assert e.status_code == 404, f"HTTP {e.status_code}"
        assert e.error == "ERROR_METHOD_NOT_FOUND", f"error: {e.error!r}"
    raw = token.call_batch({"ok": ("crm.lead.get", {"id": single}), "bad": ("no.such.method", {})})
    errors = raw["result"]["result_error"]
    assert set(errors) == {"bad"} and errors["bad"]["error"] == "ERROR_METHOD_NOT_FOUND", f"result_error: {errors!r}"
    assert raw["result"]["result"]["ok"]["TITLE"] == f"{PREFIX}single", f"batch ok: {raw['result']['result']!r}"

    print(json.dumps({"leads": sorted(ours | {other}), "deals": {"services": sorted(deals.values()), "goods": [goods]}}))


def batch_order():
    """`batch` runs its commands in the order sent, as Bitrix24 does, whatever their labels.
    b24pysdk labels a list of requests `0`, `1`, … `11`, and `10` sorts before `2`."""
    token = BitrixWebhook(domain=os.environ["LEADFLOW_DOMAIN"], webhook_token=os.environ["LEADFLOW_WEBHOOK"])
    client = Client(token)
    crm = client.crm
    seq = client.call_batch([crm.lead.add({"TITLE": f"{PREFIX}seq-{i}"}) for i in range(12)]).result
    assert not seq.result_error, f"12 adds: {seq.result_error!r}"
    answers = seq.result if isinstance(seq.result, list) else [seq.result[str(i)] for i in range(12)]
    assert answers == sorted(answers), f"ids in the order the adds were sent: {answers!r}"
    ours = set(answers)
    assert len(ours) == 12, f"12 leads: {answers!r}"
    print(json.dumps({"leads": sorted(ours), "deals": {}}))


def typed_fields():
    """b24pysdk's typed answers (`.value`) parse: `user.current` and the `crm.*.fields` of
    leads, deals, contacts and companies (an enumeration's items carry integer `ID`s in
    Bitrix24, and b24pysdk converts them). All failures are reported together."""
    token = BitrixWebhook(domain=os.environ["LEADFLOW_DOMAIN"], webhook_token=os.environ["LEADFLOW_WEBHOOK"])
    client = Client(token)
    crm = client.crm
    wrong = []
    for name, request in [
        ("user.current", client.user.current()),
        ("crm.lead.fields", crm.lead.fields()),
        ("crm.deal.fields", crm.deal.fields()),
        ("crm.contact.fields", crm.contact.fields()),
        ("crm.company.fields", crm.company.fields()),
    ]:
        try:
            request.value
        except Exception as e:  # noqa: BLE001 -- any failure to parse is the finding
            wrong.append(f"{name}.value: {type(e).__name__}: {e}")
    assert not wrong, "typed answers that do not parse:\n" + "\n".join(wrong)
    print(json.dumps({"leads": [], "deals": {}}))


if __name__ == "__main__":
    {"main": main, "batch-order": batch_order, "typed-fields": typed_fields}[sys.argv[1] if len(sys.argv) > 1 else "main"]()
