"""Input no page can use is refused with a 400 naming it, and redirects never go to the client's Host."""

from __future__ import annotations

import pytest

from core.filenames import clean_file_name


def test_a_doubled_slash_redirect_stays_on_this_site_whatever_the_host_header(client):
    response = client.get("/static//etc/passwd", headers={"Host": "evil.example"})
    location = response.headers.get("Location", "")
    assert "evil.example" not in location
    assert location.startswith("/") and not location.startswith("//")


@pytest.mark.parametrize(("url", "named"), [
    ("/tickets?q=%00abc", "q"),
    ("/tickets?status=open%00", "status"),
    ("/my/tickets?q=a%01b", "q"),
    ("/assets?q=%00", "q"),
    ("/audit?username=%00x", "username"),
    ("/tickets?page=99999999999999999999", "page"),
    ("/tickets?category=99999999999999999999", "category"),
    ("/tickets?assignee=-99999999999999999999", "assignee"),
])
def test_control_characters_and_huge_numbers_in_parameters_are_a_400_naming_them(client, login_as,
                                                                                 url, named):
    login_as("admin", "ada")
    response = client.get(url)
    assert response.status_code == 400, url
    assert f"«{named}»".encode() in response.data


def test_a_huge_id_in_the_address_is_a_400(client, login_as):
    login_as("admin", "ada")
    assert client.get("/admin/users/99999999999999999999").status_code == 400
    assert client.get("/admin/jobs/99999999999999999999/retry").status_code in (400, 405)


@pytest.mark.parametrize(("url", "shown"), [
    ("/tickets?q=%C2%B2%C2%B2", "«²» (U+00B2)"),
    ("/tickets?q=%E2%85%AB", "«Ⅻ» (U+216B)"),
    ("/assets?q=CT%C2%B2", "«²» (U+00B2)"),
    ("/my/tickets?q=%EE%80%80", "(U+E000)"),
])
def test_odd_unicode_in_search_is_a_400_naming_the_parameter_and_the_character(client, login_as,
                                                                              url, shown):
    login_as("technician", "sam")
    response = client.get(url)
    assert response.status_code == 400, url
    text = response.get_data(as_text=True)
    assert "«q»" in text and shown in text


def test_accents_symbols_stray_bytes_and_long_digit_runs_in_search_are_searched(client, login_as):
    login_as("admin", "ada")
    for url in ("/tickets?q=M%C3%BCller", "/tickets?q=%E2%9C%93", "/tickets?q=%E6%9D%B1%E4%BA%AC",
                "/tickets?q=%ED%A0%80",
                "/assets?q=12345678901234567890", "/audit?object_id=99999999999999999999"):
        response = client.get(url)
        assert response.status_code == 200, url


def test_a_nul_in_an_asset_field_is_a_400_and_nothing_is_saved(app, client, login_as):
    login_as("technician", "sam")
    response = client.post("/assets/new", data={"tag": "WS-77", "name": "Reading\x00room",
                                                 "kind": "workstation", "status": "in_service"})
    assert response.status_code == 400
    assert "«name»" in response.get_data(as_text=True)
    assert client.get("/assets/WS-77").status_code == 404


@pytest.mark.parametrize(("raw", "clean"), [
    ("cert\r\nSet-Cookie: x.pdf", "certSet-Cookie: x.pdf"),
    ("in\x00voice.pdf", "invoice.pdf"),
    ("report\u202egpj.pdf", "reportgpj.pdf"),
    ("..\\..\\boot.ini", "boot.ini"),
    ('a"b.png', "ab.png"),
    ("\u2066\u2069", "file"),
])
def test_file_names_lose_line_breaks_nul_and_bidi_overrides(raw, clean):
    assert clean_file_name(raw) == clean
