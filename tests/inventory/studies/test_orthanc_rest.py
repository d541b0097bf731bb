"""Deleting studies through a real Orthanc's REST API, each failure told apart."""

from __future__ import annotations

import time

import pytest

from inventory.studies.orthanc import (
    OrthancAuthError,
    OrthancClient,
    OrthancNotFound,
    OrthancServerError,
    OrthancTimeout,
    OrthancUnreachable,
)
from inventory.studies.query import study_exists
from tests.helpers import OVERRUN
from tests.inventory.conftest import stay_silent
from tests.inventory.studies.archive_support import PASSWORD, StudySpec

pytestmark = pytest.mark.integration

KEPT = StudySpec("1.2.826.0.1.3680043.12.1", "20100101", "KEEP")
DOOMED = StudySpec("1.2.826.0.1.3680043.12.2", "20100102", "GO")
FAILING_DELETE = """
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  if method == 'DELETE' then
    error('the storage area is failing')
  end
  return true
end
"""


@pytest.fixture
def two_studies(orthanc):
    """An Orthanc holding KEPT and DOOMED."""
    server = orthanc()
    server.store(ds for spec in (KEPT, DOOMED) for ds in spec.datasets())
    return server


def test_a_study_deleted_through_rest_is_gone_from_c_find_and_the_other_stays(two_studies):
    client = two_studies.client()
    orthanc_id = client.find_study(DOOMED.study_uid)
    assert orthanc_id is not None
    client.delete_study(orthanc_id)
    archive = two_studies.archive()
    assert not study_exists(archive, DOOMED.study_uid)
    assert study_exists(archive, KEPT.study_uid)
    assert client.find_study(DOOMED.study_uid) is None


def test_lookup_of_an_unknown_uid_is_none(two_studies):
    assert two_studies.client().find_study("1.2.826.0.1.3680043.12.99") is None


def test_wrong_password_on_delete_is_an_auth_error_and_the_study_stays(two_studies):
    orthanc_id = two_studies.client().find_study(DOOMED.study_uid)
    assert orthanc_id is not None
    with pytest.raises(OrthancAuthError) as caught:
        two_studies.client(password=PASSWORD + "-wrong").delete_study(orthanc_id)
    assert caught.value.status == 401
    assert "credentials" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert study_exists(two_studies.archive(), DOOMED.study_uid)


def test_deleting_an_id_orthanc_does_not_hold_is_not_found(two_studies):
    with pytest.raises(OrthancNotFound) as caught:
        two_studies.client().delete_study("00000000-00000000-00000000-00000000-00000000")
    assert caught.value.status == 404


def test_deleting_twice_is_not_found_the_second_time(two_studies):
    client = two_studies.client()
    orthanc_id = client.find_study(DOOMED.study_uid)
    assert orthanc_id is not None
    client.delete_study(orthanc_id)
    with pytest.raises(OrthancNotFound):
        client.delete_study(orthanc_id)


def test_orthanc_failing_the_delete_is_a_server_error_and_the_study_stays(orthanc):
    server = orthanc(lua=FAILING_DELETE)
    server.store(DOOMED.datasets())
    client = server.client()
    orthanc_id = client.find_study(DOOMED.study_uid)
    assert orthanc_id is not None
    with pytest.raises(OrthancServerError) as caught:
        client.delete_study(orthanc_id)
    assert caught.value.status == 500
    assert "Cannot execute a Lua command" in str(caught.value)
    assert "storage area" not in str(caught.value), "Orthanc's details stay out of the message"
    assert study_exists(server.archive(), DOOMED.study_uid)


def test_nothing_listening_is_unreachable(closed_port):
    client = OrthancClient(f"http://127.0.0.1:{closed_port}", "user", "pw", timeout=1.0)
    with pytest.raises(OrthancUnreachable) as caught:
        client.find_study(DOOMED.study_uid)
    assert not isinstance(caught.value, OrthancTimeout)
    assert "connection failed" in str(caught.value)


def test_a_server_that_never_answers_times_out_within_the_timeout(raw_peer):
    port = raw_peer(stay_silent)
    client = OrthancClient(f"http://127.0.0.1:{port}", "user", "pw", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(OrthancTimeout):
        client.delete_study("00000000-00000000-00000000-00000000-00000000")
    assert time.monotonic() - started < 1.0 + OVERRUN


@pytest.mark.parametrize("bad_id", ["../tools/reset", "", "0000",
                                    "00000000-00000000-00000000-00000000-0000000G"])
def test_an_id_that_is_not_an_orthanc_id_is_refused_before_any_request(bad_id):
    client = OrthancClient("http://127.0.0.1:9", timeout=1.0)
    with pytest.raises(ValueError, match="orthanc_id"):
        client.delete_study(bad_id)


@pytest.mark.parametrize(("url", "field"), [("ftp://host", "base_url"), ("http://", "base_url"),
                                            ("http://u:p@host:8042", "base_url"),
                                            ("http://host:99999", "base_url")])
def test_a_bad_base_url_is_refused_naming_it(url, field):
    with pytest.raises(ValueError, match=field):
        OrthancClient(url)

