#!/bin/sh
# Written by Herd: {{ description }}.
# This is both a boot-list entry (run without arguments when the server starts) and
# the only way Herd starts and stops the daemon, so both paths behave the same:
#   [boot]   (the boot list) start it unless it runs{% if hold_file %} or was stopped on purpose{% endif %}
#   start    start it detached unless it already runs
#   stop     stop it and wait until it is gone
#   status   exit 0 when it runs
#   reload   send it SIGHUP (re-read configuration)
set -u
PIDFILE={{ pid_file }}
LOGFILE={{ log_file }}
# Only a live process whose command line names this file counts as ours: a stale
# pid file, a recycled pid or a zombie (empty command line) does not.
MATCH={{ match }}
{%- if hold_file %}
# Present while the daemon is stopped on purpose (Herd's stop_ha): a server
# restart must not bring it back; Herd's start removes it first.
HOLD={{ hold_file }}
{%- endif %}

running() {
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    grep -qF -- "$MATCH" "/proc/$pid/cmdline" 2>/dev/null
}

start() {
    cd / || return 1
    if running; then
        echo "{{ name }} already running (pid $pid)"
        return 0
    fi
{%- for d in runtime_dirs %}
    install -d -o {{ d.owner }} -g {{ d.group }} -m {{ d.mode }} {{ d.path }} || return 1
{%- endfor %}
    # The new session detaches it from whoever started it (an SSH session, the boot
    # list); the shell records its own pid, which exec hands on to the daemon, and
    # setpriv drops root for good (no helper process stays behind as root).
    setsid sh -c 'echo $$ > "$1" && shift && exec "$@"' sh "$PIDFILE" \
        setpriv --reuid={{ user }} --regid={{ group }} --init-groups -- \
        env {{ env }} {{ command }} </dev/null >>"$LOGFILE" 2>&1 &
    # Wait for the pid file so that a status right after start is exact.
    i=0
    while ! running && [ "$i" -lt 250 ]; do
        sleep 0.02
        i=$((i + 1))
    done
    if running; then
        echo "{{ name }} started (pid $pid)"
        return 0
    fi
    echo "{{ name }} did not start (pid file: $(cat "$PIDFILE" 2>/dev/null || echo none)); last log lines:" >&2
    tail -n 20 "$LOGFILE" >&2
    return 1
}

{%- if data_dir %}
pg_ctl_as_owner() {
    setpriv --reuid={{ user }} --regid={{ group }} --init-groups -- {{ pg_ctl }} -D {{ data_dir }} "$@"
}
{% endif %}
stop() {
    if running; then
        kill -TERM "$pid" 2>/dev/null
        i=0
        while running && [ "$i" -lt {{ stop_ticks }} ]; do
            sleep 0.1
            i=$((i + 1))
        done
        if running; then
            echo "{{ name }} ignored SIGTERM for {{ stop_timeout }}s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null
            sleep 0.1
        fi
    fi
{%- if data_dir %}
    # Patroni stops PostgreSQL on SIGTERM; a postmaster left behind (Patroni was
    # killed) is stopped here.
    if [ -f {{ data_dir }}/postmaster.pid ] && pg_ctl_as_owner status >/dev/null 2>&1; then
        pg_ctl_as_owner stop -m fast -w -t 30 >/dev/null 2>&1 ||
            pg_ctl_as_owner stop -m immediate -w -t 10 >/dev/null 2>&1
    fi
{%- endif %}
    rm -f "$PIDFILE"
    echo "{{ name }} stopped"
}

case "${1:-boot}" in
boot)
{%- if hold_file %}
    if [ -e "$HOLD" ]; then
        echo "{{ name }} held stopped ($HOLD); not starting"
        exit 0
    fi
{%- endif %}
    start
    ;;
start) start ;;
stop) stop ;;
status) running ;;
reload) if running; then kill -HUP "$pid"; fi ;;
*)
    echo "usage: $0 [boot|start|stop|status|reload]" >&2
    exit 2
    ;;
esac
