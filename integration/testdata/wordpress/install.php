<?php
/**
 * Installs WordPress non-interactively for TestWordPressE2E
 * (integration/wordpress_e2e_test.go), as wp-admin/install.php?step=2 would:
 *
 *   php install.php <tree> <title> <admin login> <admin email> <admin password>
 *
 * <tree> is the test's private WordPress tree: its own copy of wp-load.php
 * makes it ABSPATH, so the wp-config.php the test wrote there (database
 * settings, site URL) is the one WordPress loads. On success
 * the last line of the output is "moserver-e2e: installed user_id=<id>";
 * anything else (WordPress's wp_die() pages exit with status 0) is a failure.
 */

if ( 'cli' !== PHP_SAPI ) {
	exit( 1 );
}
if ( 6 !== $argc ) {
	fwrite( STDERR, "usage: php install.php <tree> <title> <login> <email> <password>\n" );
	exit( 2 );
}
if ( ! extension_loaded( 'mysqli' ) ) {
	fwrite( STDERR, "PHP has no mysqli extension: apt-get install php-mysql\n" );
	exit( 2 );
}
list( , $tree, $title, $login, $email, $password ) = $argv;

define( 'WP_INSTALLING', true );

/** wp_new_blog_notification() is pluggable: no e-mail to the new admin. */
function wp_new_blog_notification( ...$args ) {
}

require rtrim( $tree, '/' ) . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';

// No HTTP at all: wp_install() probes the (not yet running) site for pretty permalinks.
add_filter(
	'pre_http_request',
	function () {
		return new WP_Error( 'moserver_e2e', 'no HTTP during the test install' );
	}
);

$result = wp_install( $title, $login, $email, true, '', wp_slash( $password ) );

// Pretty permalinks, so that /wp-json/ is the REST API (with plain permalinks only
// ?rest_route= is). The rewrite rules are rebuilt by the first web request.
update_option( 'permalink_structure', '/%postname%/' );
delete_option( 'rewrite_rules' );

if ( empty( $result['user_id'] ) || ! get_user_by( 'login', $login ) ) {
	fwrite( STDERR, "wp_install did not create the admin user\n" );
	exit( 1 );
}
echo 'moserver-e2e: installed user_id=' . (int) $result['user_id'] . "\n";
