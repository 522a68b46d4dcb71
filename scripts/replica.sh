#!/usr/bin/env bash
# A streaming read replica of the store on this machine: a second PostgreSQL server (same major
# version as the primary) on its own port and data directory, made by pg_basebackup -R and
# streaming from the primary. Safe to run again: it creates what is missing, starts what is
# stopped and reports. It never stops, restarts or reconfigures the primary beyond adding one
# pg_hba line for local replication (and then reloading it, never restarting it).
#
#   scripts/replica.sh [start]   create if missing, start, wait until streaming, report
#   scripts/replica.sh status    report (exit 3 when the replica is not running)
#   scripts/replica.sh stop      stop the replica (fast shutdown); the data directory stays,
#                                and the primary keeps the WAL it will need (its slot)
#   scripts/replica.sh remove    stop it, delete its data directory, drop its slot
#
# Settings (environment):
#   REPLICA_PORT   port of the replica (5433)
#   REPLICA_DIR    its data directory (/var/lib/postgresql/<major>/twin-replica as root,
#                  ~/.local/share/citytwin/replica-<port> otherwise)
#   PRIMARY_HOST, PRIMARY_PORT, PRIMARY_USER   the primary (127.0.0.1, 5432, postgres)
#   REPLICA_WAIT_S how long start waits for the replica to stream (120)
#
# Then serve with TWIN_DATABASE_READ_URLS=postgresql://postgres@127.0.0.1:<port> (the database
# name is taken from TWIN_DATABASE_URL when the read URL names none).
set -euo pipefail

ACTION="${1:-start}"
PORT="${REPLICA_PORT:-5433}"
PRIMARY_HOST="${PRIMARY_HOST:-127.0.0.1}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"
PRIMARY_USER="${PRIMARY_USER:-postgres}"
WAIT_S="${REPLICA_WAIT_S:-120}"

say() { echo "[replica] $*"; }
die() { echo "[replica] error: $*" >&2; exit 1; }

case "$ACTION" in
start | status | stop | remove) ;;
*) die "unknown action '$ACTION' (start, status, stop or remove)" ;;
esac
[[ "$PORT" =~ ^[0-9]+$ ]] || die "REPLICA_PORT '$PORT' is not a port number"
[[ "$PORT" != "$PRIMARY_PORT" ]] || die "REPLICA_PORT $PORT is the primary's port"

PRIMARY="host=$PRIMARY_HOST port=$PRIMARY_PORT user=$PRIMARY_USER dbname=postgres connect_timeout=5"
psql_primary() { psql "$PRIMARY" -X -At -v ON_ERROR_STOP=1 "$@"; }

# the binaries of the primary's major version
command -v psql >/dev/null || die "psql is missing (apt-get install postgresql-client)"
MAJOR="$(psql_primary -c "SELECT current_setting('server_version_num')::int / 10000")" ||
	die "the primary at $PRIMARY_HOST:$PRIMARY_PORT does not answer"
BIN="/usr/lib/postgresql/$MAJOR/bin"
[[ -x "$BIN/pg_ctl" && -x "$BIN/pg_basebackup" ]] ||
	BIN="$(dirname "$(command -v pg_ctl || echo /nonexistent/pg_ctl)")"
[[ -x "$BIN/pg_ctl" && -x "$BIN/pg_basebackup" ]] ||
	die "PostgreSQL $MAJOR server binaries (pg_ctl, pg_basebackup) are missing"

# PostgreSQL refuses to run as root: as root, the replica runs as the primary's owner, postgres
if [[ "$(id -u)" == 0 ]]; then
	OWNER=postgres
	as_owner() { runuser -u "$OWNER" -- "$@"; }
	DEFAULT_DIR="/var/lib/postgresql/$MAJOR/twin-replica"
else
	OWNER="$(id -un)"
	as_owner() { "$@"; }
	DEFAULT_DIR="$HOME/.local/share/citytwin/replica-$PORT"
fi
DIR="${REPLICA_DIR:-$DEFAULT_DIR}"
[[ "$DIR" == /* ]] || DIR="$(pwd)/$DIR"
PRIMARY_DATA="$(psql_primary -c 'SHOW data_directory')"
[[ "$(realpath -m "$DIR")" != "$(realpath -m "$PRIMARY_DATA")" ]] ||
	die "REPLICA_DIR $DIR is the primary's data directory"
LOG="$DIR/replica.log"
# a replication slot per data directory: the primary keeps the WAL the replica has not received
# yet (from its copy on, while it is stopped too), so a busy primary never recycles WAL the
# replica still needs. 'remove' drops it; a slot whose data directory is gone (a test killed
# before it removed its replica) is dropped by the next start (STATE records slot -> directory).
SLOT="twin_replica_$(printf '%s' "$(realpath -m "$DIR")" | sha1sum | cut -c1-16)"
if [[ "$(id -u)" == 0 ]]; then
	STATE="/var/lib/postgresql/citytwin-replica-slots"
else
	STATE="${XDG_STATE_HOME:-$HOME/.local/state}/citytwin/replica-slots"
fi
REPLICA="host=127.0.0.1 port=$PORT user=$PRIMARY_USER dbname=postgres connect_timeout=3"

running() { [[ -f "$DIR/postmaster.pid" ]] && as_owner "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; }

report() {
	if ! running; then
		say "not running (port $PORT, data directory $DIR)"
		return 3
	fi
	local state
	state="$(psql "$REPLICA" -X -At -c "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'not streaming') || ', replayed ' || coalesce(pg_last_wal_replay_lsn()::text, '?') || ', ' || coalesce('last replayed commit ' || round(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::numeric, 3) || ' s ago', 'no commit replayed yet')" 2>&1)" ||
		state="not answering: $state"
	say "port $PORT, data directory $DIR: $state"
	say "primary at $(psql_primary -c "SELECT pg_current_wal_lsn()")"
	say "read URL: postgresql://$PRIMARY_USER@127.0.0.1:$PORT (set TWIN_DATABASE_READ_URLS)"
}

stop() {
	if running; then
		as_owner "$BIN/pg_ctl" -D "$DIR" -m fast -w -t 60 stop >/dev/null
		say "stopped (port $PORT)"
	else
		say "not running"
	fi
}

# the primary: WAL for replicas, and a pg_hba line letting this machine stream (trust, like the
# rest of the local set-up), added once and loaded with a reload
prepare_primary() {
	local level senders
	level="$(psql_primary -c 'SHOW wal_level')"
	senders="$(psql_primary -c 'SHOW max_wal_senders')"
	[[ "$level" == replica || "$level" == logical ]] ||
		die "the primary's wal_level is '$level': set it to 'replica' (needs a restart, which this script never does)"
	((senders > 0)) || die "the primary's max_wal_senders is 0 (needs a restart to change)"
	if psql "host=$PRIMARY_HOST port=$PRIMARY_PORT user=$PRIMARY_USER replication=true connect_timeout=5" \
		-X -At -c IDENTIFY_SYSTEM >/dev/null 2>&1; then
		return 0
	fi
	local hba line
	hba="$(psql_primary -c 'SHOW hba_file')"
	line="host replication all 127.0.0.1/32 trust"
	if ! grep -Eq '^[[:space:]]*host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba" 2>/dev/null; then
		[[ -w "$hba" ]] || die "the primary refuses replication from 127.0.0.1; add '$line' to $hba and reload it"
		printf '# CityTwin read replica (scripts/replica.sh)\n%s\n' "$line" >>"$hba"
		say "added '$line' to $hba"
	fi
	psql_primary -c 'SELECT pg_reload_conf()' >/dev/null
	say "reloaded the primary's configuration (not restarted)"
	local tries=0
	until psql "host=$PRIMARY_HOST port=$PRIMARY_PORT user=$PRIMARY_USER replication=true connect_timeout=5" \
		-X -At -c IDENTIFY_SYSTEM >/dev/null 2>&1; do
		((++tries < 50)) || die "the primary still refuses replication from 127.0.0.1 (see $hba)"
		sleep 0.1
	done
}

drop_slot() { # drop a slot if it exists and no replica is streaming from it
	psql_primary -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
		WHERE slot_name = '$1' AND NOT active" >/dev/null
}

drop_orphan_slots() { # slots this script made whose data directory is gone
	local file slot dir
	[[ -d "$STATE" ]] || return 0
	for file in "$STATE"/twin_replica_*; do
		[[ -f "$file" ]] || continue
		slot="$(basename "$file")"
		dir="$(cat "$file")"
		if [[ ! -f "$dir/PG_VERSION" ]]; then
			drop_slot "$slot"
			rm -f "$file"
			say "dropped replication slot $slot (its replica $dir is gone)"
		fi
	done
}

create() {
	say "copying the primary into $DIR (pg_basebackup -R, replication slot $SLOT)"
	drop_slot "$SLOT" # a slot left by an earlier copy here: this copy starts afresh
	mkdir -p "$STATE"
	printf '%s\n' "$(realpath -m "$DIR")" >"$STATE/$SLOT"
	mkdir -p "$DIR"
	chown "$OWNER" "$DIR"
	chmod 700 "$DIR"
	# the owner must be able to reach the directory (a test's temporary folder, say)
	as_owner test -x "$DIR" || die "$OWNER cannot reach $DIR: make its parents searchable"
	as_owner "$BIN/pg_basebackup" -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$PRIMARY_USER" \
		-D "$DIR" -R -X stream -c fast --no-password -C -S "$SLOT"
	# a Debian primary keeps its configuration outside the data directory: the replica gets
	# its own, with the primary's authentication rules (same roles, same pg_hba) and the
	# settings a hot standby must have at least as large as its primary's
	local hba ident setting value
	hba="$(psql_primary -c 'SHOW hba_file')"
	ident="$(psql_primary -c 'SHOW ident_file')"
	if [[ ! -f "$DIR/pg_hba.conf" ]]; then
		cat "$hba" >"$DIR/pg_hba.conf"
	fi
	if [[ ! -f "$DIR/pg_ident.conf" ]]; then
		cat "$ident" >"$DIR/pg_ident.conf" 2>/dev/null || : >"$DIR/pg_ident.conf"
	fi
	{
		echo "# written by scripts/replica.sh: a hot standby of $PRIMARY_HOST:$PRIMARY_PORT"
		echo "port = $PORT"
		echo "listen_addresses = '127.0.0.1'"
		echo "unix_socket_directories = '$DIR'"
		echo "hot_standby = on"
		echo "hot_standby_feedback = on"
		echo "wal_receiver_status_interval = 1s"
		echo "shared_buffers = 128MB"
		echo "logging_collector = off"
		for setting in max_connections max_worker_processes max_wal_senders \
			max_prepared_transactions max_locks_per_transaction shared_preload_libraries \
			timezone; do
			value="$(psql_primary -c "SHOW $setting")"
			echo "$setting = '$value'"
		done
	} >"$DIR/postgresql.conf"
	chown "$OWNER" "$DIR/postgresql.conf" "$DIR/pg_hba.conf" "$DIR/pg_ident.conf"
}

start() {
	prepare_primary
	drop_orphan_slots
	if [[ ! -f "$DIR/PG_VERSION" ]]; then
		if [[ -d "$DIR" ]] && [[ -n "$(ls -A "$DIR")" ]]; then
			die "$DIR is not empty and holds no PostgreSQL data directory"
		fi
		create
	fi
	if ! running; then
		as_owner "$BIN/pg_ctl" -D "$DIR" -l "$LOG" -w -t "$WAIT_S" \
			-o "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$DIR" start >/dev/null ||
			die "the replica did not start; see $LOG"
		say "started on port $PORT"
	fi
	# streaming, not just up: a replica that cannot follow (WAL the primary no longer has, say)
	# says so instead of serving an old copy in silence
	local deadline=$((SECONDS + WAIT_S)) status
	while :; do
		status="$(psql "$REPLICA" -X -At -c "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null || true)"
		[[ "$status" == streaming ]] && break
		if ((SECONDS >= deadline)); then
			if grep -q "has already been removed" "$LOG" 2>/dev/null; then
				die "the replica fell too far behind (the primary recycled its WAL): run '$0 remove' then '$0' to copy it again"
			fi
			die "the replica is up but not streaming after ${WAIT_S}s; see $LOG"
		fi
		sleep 0.2
	done
	report
}

case "$ACTION" in
start) start ;;
status) report ;;
stop) stop ;;
remove)
	stop
	if [[ -f "$DIR/PG_VERSION" ]]; then
		rm -rf "$DIR"
		say "removed $DIR"
	fi
	drop_slot "$SLOT"
	rm -f "$STATE/$SLOT"
	;;
esac
