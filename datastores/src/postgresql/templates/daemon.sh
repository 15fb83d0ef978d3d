#!/bin/sh
# Written by Herd: {{ description }}.
# This is both a boot-list entry (run without arguments when the server starts) and
# the only way Herd starts and stops the daemon, so both paths behave the same:
#   [boot]   (the boot list) start it unless it runs{% if hold_file %} or was stopped on purpose{% endif %}
#   start    start it detached unless it already runs
#   stop     stop it and wait until it is gone
#   status   exit 0 when it runs
#   reload   send it SIGHUP (re-read configuration)
#   log [N]  print the last N (default 20) lines of its log
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
    grep -qF -- "$MATCH" "/proc/$pid/cmdline" 2>/dev/null && return 0
    # While start's chain of execs runs, a live process's command line reads empty
    # for an instant: a live pid gets a second look before it counts as not ours.
    [ -d "/proc/$pid" ] || return 1
    sleep 0.05
    grep -qF -- "$MATCH" "/proc/$pid/cmdline" 2>/dev/null
}

# Starts and stops of this daemon take turns: two concurrent starts (a boot list
# and Herd, or two of Herd's retries) would otherwise both see it stopped and both
# launch one. The lock goes when this script exits; the daemon never inherits it.
take_turn() {
    mkdir -p -- "${PIDFILE%/*}" && exec 9>>"$PIDFILE.lock" && flock 9
}

as_user() {
    setpriv --reuid={{ user }} --regid={{ group }} --init-groups -- "$@"
}

# Root never opens the log: its directory is writable by the daemon's user, who
# could plant a symlink there to make root append to, or print, any file. The
# unprivileged shell that becomes the daemon opens it, and reads go through it too.
show_log() {
    as_user tail -n "${1:-20}" -- "$LOGFILE" 2>/dev/null
}

# A log left by an older Herd (opened by root) is root's: the daemon's user could not
# append to it, so it goes aside. A rename never follows a symlink.
own_log() {
    [ -e "$LOGFILE" ] || [ -L "$LOGFILE" ] || return 0
    [ "$(stat -c %U -- "$LOGFILE")" = {{ user }} ] && return 0
    mv -fT -- "$LOGFILE" "$LOGFILE.root-owned"
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
    own_log || return 1
    # The new session detaches it from whoever started it (an SSH session, the boot
    # list); the shell records its own pid, which exec hands on to the daemon, and
    # setpriv drops root for good (no helper process stays behind as root) before
    # the log is opened.
    setsid sh -c 'echo $$ > "$1" && shift && exec "$@"' sh "$PIDFILE" \
        setpriv --reuid={{ user }} --regid={{ group }} --init-groups -- \
        sh -c 'exec "$@" >>"$0" 2>&1' "$LOGFILE" \
        env {{ env }} {{ command }} </dev/null >/dev/null 2>"$PIDFILE.start" 9>&- &
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
    # What failed before the log was open (the pid file's directory is root's).
    cat "$PIDFILE.start" >&2 2>/dev/null
    show_log 20 >&2
    return 1
}

{%- if data_dir %}
pg_ctl_as_owner() {
    as_user {{ pg_ctl }} -D {{ data_dir }} "$@"
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
boot | start | stop | reload) take_turn || exit 1 ;;
esac

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
log) show_log "${2:-20}" ;;
*)
    echo "usage: $0 [boot|start|stop|status|reload|log [N]]" >&2
    exit 2
    ;;
esac
