"""Services: built by the factory, started only by a serving entry point, once."""
from ollama_server.services import EXTENSION_KEY


def test_building_the_app_starts_no_background_work(make_app):
    svc = make_app().extensions[EXTENSION_KEY]
    assert not svc.scheduler.running and svc.scheduler.get_jobs() == []


def test_start_schedules_each_job_once_however_often_it_is_called(make_app):
    svc = make_app().extensions[EXTENSION_KEY]
    try:
        svc.start(warm=False)
        svc.start(warm=False)
        jobs = svc.scheduler.get_jobs()
        assert sorted(job.id for job in jobs) == ["collect", "config-file", "keep-alive", "metrics-maintenance",
                                                 "partial-expiry"]
        assert all(job.max_instances == 1 and job.coalesce for job in jobs)
    finally:
        svc.close()
    assert not svc.scheduler.running
