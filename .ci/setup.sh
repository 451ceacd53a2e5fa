#!/usr/bin/env bash
# Machine setup for the test suite (./xcaddy.sh test runs it; so does CI):
# installs what the tests need beyond what a fresh machine has, and starts
# MariaDB when nothing answers on 127.0.0.1:3306.
#   - redis-server (the tests start private ones) and mariadb-server;
#   - Debian's wordpress, php-fpm, php-mysql and php-cli for the end-to-end
#     tests against a real WordPress (they start their own php-fpm; apache2,
#     which the wordpress package pulls in, is never left running).
set -euo pipefail

log() { printf '==> %s\n' "$*"; }
die() {
	printf 'setup.sh: %s\n' "$*" >&2
	exit 1
}

ensure_system_packages() {
	local missing=() web=() had_apache=0
	command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
	command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]] || missing+=(mariadb-server)
	# TestWordPressE2E (integration/): Debian's WordPress, served by a php-fpm the test starts itself.
	[[ -f /usr/share/wordpress/wp-load.php ]] || web+=(wordpress)
	compgen -G '/usr/sbin/php-fpm*' >/dev/null || web+=(php-fpm)
	compgen -G '/usr/lib/php/*/mysqli.so' >/dev/null || web+=(php-mysql)
	command -v php >/dev/null 2>&1 || web+=(php-cli)
	if ((${#missing[@]} + ${#web[@]} == 0)); then
		log "system packages present: redis-server mariadb-server wordpress php-fpm php-mysql"
	else
		if [[ "$(id -u)" -ne 0 ]]; then
			die "missing system packages: ${missing[*]} ${web[*]}; install them with: sudo apt-get install -y ${missing[*]} ${web[*]}"
		fi
		export DEBIAN_FRONTEND=noninteractive
		apt-get update
		if ((${#missing[@]} > 0)); then
			log "installing missing system packages: ${missing[*]}"
			apt-get install -y "${missing[@]}"
			command -v redis-server >/dev/null 2>&1 || die "redis-server is still not on PATH ($PATH) after apt-get install"
		fi
		if ((${#web[@]} > 0)); then
			# wordpress depends on apache2 | httpd: apache2 comes along but must not run (port 80).
			# No service starts during the install (policy-rc.d 101, unless the machine has its
			# own policy), and an apache2 installed here is disabled and verified stopped.
			[[ -x /usr/sbin/apache2 ]] && had_apache=1
			log "installing missing system packages: ${web[*]} (--no-install-recommends, no service started)"
			if [[ -e /usr/sbin/policy-rc.d ]]; then
				apt-get install -y --no-install-recommends "${web[@]}"
			else
				(
					trap 'rm -f /usr/sbin/policy-rc.d' EXIT
					printf '#!/bin/sh\n# xcaddy.sh: no service starts while test packages install\nexit 101\n' >/usr/sbin/policy-rc.d
					chmod 755 /usr/sbin/policy-rc.d
					apt-get install -y --no-install-recommends "${web[@]}"
				)
			fi
			if ((!had_apache)) && [[ -x /usr/sbin/apache2 ]]; then
				if command -v systemctl >/dev/null 2>&1; then
					systemctl disable --now apache2 apache-htcacheclean >/dev/null 2>&1 || true
				fi
				update-rc.d apache2 disable >/dev/null 2>&1 || true
				if pgrep -x apache2 >/dev/null 2>&1; then
					apache2ctl stop >/dev/null 2>&1 || true
					sleep 1
					! pgrep -x apache2 >/dev/null 2>&1 || die "apache2 (installed with wordpress) is running and would not stop"
				fi
			fi
			[[ -f /usr/share/wordpress/wp-load.php ]] && compgen -G '/usr/sbin/php-fpm*' >/dev/null && command -v php >/dev/null 2>&1 ||
				die "wordpress / php-fpm / php still missing after apt-get install ${web[*]}"
		fi
	fi
	# The integration tests need MariaDB up on 127.0.0.1:3306 (mariadbtest starts nothing).
	if ! (: <>/dev/tcp/127.0.0.1/3306) 2>/dev/null && [[ -z "${MYSQL_DSN:-}" && "$(id -u)" -eq 0 ]]; then
		log "starting MariaDB"
		install -d -o mysql -g mysql /run/mysqld
		start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
		local i
		for ((i = 0; i < 60; i++)); do
			(: <>/dev/tcp/127.0.0.1/3306) 2>/dev/null && break
			sleep 0.5
		done
		(: <>/dev/tcp/127.0.0.1/3306) 2>/dev/null || die "MariaDB did not come up on 127.0.0.1:3306 within 30s"
	fi
}

ensure_system_packages
