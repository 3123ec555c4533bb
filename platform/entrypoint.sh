#!/bin/sh
# One entry point for every Attune container: web, worker, worker-gpu, recovery, flower.
set -e
cd /app
case "$1" in
  web)
    python manage.py migrate --noinput
    python manage.py collectstatic --noinput -v 0
    # Measured in bench/README.md (load_survey.py --compare): 2 gthread workers x 4 threads on 2 cores,
    # behind the compose nginx (a new upstream connection per request, so keep-alive never races).
    exec gunicorn config.wsgi:application --bind 0.0.0.0:8000 --workers "${WEB_CONCURRENCY:-2}" \
        --worker-class "${WEB_WORKER_CLASS:-gthread}" --threads "${WEB_THREADS:-4}" --access-logfile - \
        --logger-class survey.gunicorn_logging.RedactingLogger
    ;;
  worker)
    exec celery -A config worker -Q default --concurrency "${WORKER_CONCURRENCY:-2}" -n "cpu@%h" --loglevel INFO
    ;;
  worker-gpu)
    # One task at a time per GPU, in a fresh child each time: CUDA is touched only
    # in the child, and a child killed mid-job is seen by the parent, which puts
    # the task back (acks_late + reject_on_worker_lost).
    exec celery -A config worker -Q gpu --pool prefork --concurrency 1 --max-tasks-per-child 1 -n "gpu@%h" --loglevel INFO
    ;;
  recovery)
    # Requeues jobs of lost workers and republishes lost messages; its own process, so a busy or
    # dead worker cannot hold it up (training/jobs/recovery.py).
    exec python manage.py recover_jobs
    ;;
  flower)
    # Never without a password: it shows every task's arguments and can revoke tasks.
    : "${FLOWER_BASIC_AUTH:?set FLOWER_BASIC_AUTH=NAME:PASSWORD in platform/.env to run Flower}"
    exec celery -A config flower --port=5555 --basic-auth="$FLOWER_BASIC_AUTH"
    ;;
  *)
    exec "$@"
    ;;
esac
