from __future__ import annotations

from tests.conftest import Api, create_region

ARCHITECTURE_REGIONS = {
    "regions": [
        {"name": "EU-West-1 (Primary)", "code": "eu-west-1", "isPrimary": True, "priority": 1},
        {"name": "US-East-1 (DR)", "code": "us-east-1", "isPrimary": False, "priority": 2},
        {"name": "Asia-Pacific-1 (DR)", "code": "ap-1", "isPrimary": False, "priority": 3},
    ]
}


def test_architecture_document_shape_is_accepted(api: Api) -> None:
    response = api.post("/api/regions", ARCHITECTURE_REGIONS)
    assert response.status_code == 201, response.text
    created = response.json()["regions"]
    assert [(r["code"], r["isPrimary"], r["priority"]) for r in created] == [
        ("eu-west-1", True, 1),
        ("us-east-1", False, 2),
        ("ap-1", False, 3),
    ]
    listed = api.get("/api/regions").json()
    assert [r["code"] for r in listed] == ["eu-west-1", "us-east-1", "ap-1"]


def test_first_region_becomes_primary(api: Api) -> None:
    region = api.post(
        "/api/regions", {"name": "Only", "code": "only", "isPrimary": False, "priority": 1}
    ).json()
    assert region["isPrimary"] is True


def test_new_primary_demotes_old_one(api: Api) -> None:
    first = create_region(api, "eu-west-1")
    second = create_region(api, "us-east-1", primary=True, priority=2)
    assert api.get(f"/api/regions/{first['id']}").json()["isPrimary"] is False
    assert api.get(f"/api/regions/{second['id']}").json()["isPrimary"] is True
    primaries = [r for r in api.get("/api/regions").json() if r["isPrimary"]]
    assert len(primaries) == 1


def test_primary_cannot_be_unset_directly(api: Api) -> None:
    region = create_region(api, "eu-west-1")
    response = api.put(
        f"/api/regions/{region['id']}", {"name": "EU", "code": "eu-west-1", "isPrimary": False, "priority": 1}
    )
    assert response.status_code == 409
    assert "make another region primary" in response.json()["error"]["message"]


def test_duplicate_code_conflicts_and_bulk_is_atomic(api: Api) -> None:
    create_region(api, "eu-west-1")
    response = api.post(
        "/api/regions",
        {
            "regions": [
                {"name": "New", "code": "new-1", "priority": 2},
                {"name": "Clash", "code": "eu-west-1", "priority": 3},
            ]
        },
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert [r["code"] for r in api.get("/api/regions").json()] == ["eu-west-1"]


def test_invalid_code_and_priority_are_422_with_field(api: Api) -> None:
    bad_code = api.post("/api/regions", {"name": "X", "code": "EU_West", "priority": 1})
    assert bad_code.status_code == 422
    assert bad_code.json()["error"]["details"]["field"] == "code"
    assert "invalid region code 'EU_West'" in bad_code.json()["error"]["message"]
    for priority in (0, -1, "2", 1.5, True):
        response = api.post("/api/regions", {"name": "X", "code": "x", "priority": priority})
        assert response.status_code == 422, priority
        assert response.json()["error"]["details"]["field"] == "priority"
    nested = api.post(
        "/api/regions",
        {"regions": [{"name": "X", "code": "x", "priority": 1}, {"name": "Y", "code": "y", "priority": 0}]},
    )
    assert nested.status_code == 422
    assert nested.json()["error"]["details"]["field"] == "regions[1].priority"


def test_region_with_servers_cannot_be_deleted(api: Api) -> None:
    region = create_region(api, "eu-west-1")
    server = api.post(
        "/api/servers",
        {"name": "n1", "endpoint": "unix:///run/none.sock", "regionId": region["id"], "skipValidation": True},
    )
    assert server.status_code == 201, server.text
    response = api.delete(f"/api/regions/{region['id']}")
    assert response.status_code == 409
    assert response.json()["error"]["details"] == {"servers": 1}
    assert api.delete(f"/api/servers/{server.json()['id']}").status_code == 204
    assert api.delete(f"/api/regions/{region['id']}").status_code == 204
    assert api.get(f"/api/regions/{region['id']}").status_code == 404


def test_region_changes_write_events(api: Api) -> None:
    region = create_region(api, "eu-west-1")
    events = api.get("/api/events", params={"targetType": "region"}).json()
    assert events[0]["action"] == "region.create"
    assert events[0]["targetId"] == str(region["id"])
    assert events[0]["actor"] == "token:test-admin"
    assert events[0]["outcome"] == "succeeded"
