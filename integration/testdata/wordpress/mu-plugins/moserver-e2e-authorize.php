<?php
/**
 * A stand-in, for integration/wordpress_login_test.go, for the authorize step
 * of the WP OAuth Server plugin (miniorange-oauth-20-server 6.2.0), which is
 * not in Debian: login, consent and the code, as the compat notes on the plugin
 * (PLUGIN.md, "Authorization flow", steps 1-4) and fixtures 60-85 describe them. Like
 * the plugin it runs on init for the exact URL <home>/wp-json/moserver/authorize
 * and writes the plugin's code row; the id_token the plugin would mint and
 * keep (column, option) is left out: the module mints its own at the exchange.
 */

add_action( 'init', 'moserver_e2e_authorize' );

function moserver_e2e_authorize() {
	$uri  = isset( $_SERVER['REQUEST_URI'] ) ? $_SERVER['REQUEST_URI'] : '';
	$path = explode( '?', $uri, 2 )[0];
	$here = ( is_ssl() ? 'https' : 'http' ) . '://' . ( isset( $_SERVER['HTTP_HOST'] ) ? $_SERVER['HTTP_HOST'] : '' ) . $path;
	if ( home_url( '/wp-json/moserver/authorize' ) !== $here ) {
		return;
	}
	// Any POST is the consent form's, before any OAuth check (62, 62b).
	if ( 'POST' === $_SERVER['REQUEST_METHOD'] ) {
		moserver_e2e_consent_post();
		exit;
	}

	// $_GET is backslash-escaped by WordPress; the plugin undoes it for state only.
	$client_id    = isset( $_GET['client_id'] ) ? wp_unslash( $_GET['client_id'] ) : '';
	$redirect_uri = isset( $_GET['redirect_uri'] ) ? wp_unslash( $_GET['redirect_uri'] ) : '';
	$state        = isset( $_GET['state'] ) ? wp_unslash( $_GET['state'] ) : '';
	$prompt       = isset( $_GET['prompt'] ) ? wp_unslash( $_GET['prompt'] ) : '';

	// Checks in the plugin's order (73-78); the first two come before the login check.
	if ( '' === $client_id ) {
		moserver_e2e_json_error( 'invalid_client', 'No client id supplied' );
	}
	$client = moserver_e2e_client( $client_id );
	if ( ! $client ) {
		moserver_e2e_json_error( 'invalid_client', 'The client id supplied is invalid' );
	}
	$registered = array_values( array_filter( explode( ' ', (string) $client->redirect_uri ) ) );
	if ( '' !== $redirect_uri ) {
		if ( ! in_array( $redirect_uri, $registered, true ) ) {
			moserver_e2e_json_error( 'redirect_uri_mismatch', 'The redirect URI provided is missing or does not match' );
		}
		$to = $redirect_uri;
	} elseif ( 1 === count( $registered ) ) {
		$to = $registered[0];
	} else {
		moserver_e2e_json_error( 'invalid_uri', 'No redirect URI was supplied or stored' );
	}
	$response_type = isset( $_GET['response_type'] ) ? wp_unslash( $_GET['response_type'] ) : '';
	if ( 'token' === $response_type ) {
		moserver_e2e_redirect_error( $to, 'unsupported_response_type', 'implicit grant type not supported', $state );
	}
	if ( 'code' !== $response_type ) {
		moserver_e2e_json_error( 'invalid_request', 'Invalid or missing response type' );
	}
	$scope = isset( $_GET['scope'] ) ? wp_unslash( $_GET['scope'] ) : '';
	if ( '' === $scope ) {
		$scope = 'profile email';
	} elseif ( ! moserver_e2e_scope_known( $scope ) ) {
		moserver_e2e_redirect_error( $to, 'invalid_scope', 'An unsupported scope was requested', $state );
	}

	if ( ! is_user_logged_in() ) {
		// 60: the whole authorize URL, as requested, comes back after login.
		wp_redirect( wp_login_url( ( is_ssl() ? 'https' : 'http' ) . '://' . $_SERVER['HTTP_HOST'] . $uri ) );
		exit;
	}
	$user_id = get_current_user_id();
	$granted = get_user_meta( $user_id, 'mo_oauth_server_granted_' . $client_id, true );
	// 61, 67, 68, 68b, 69, 70: the code at once only for a stored allow
	// (unless prompt=consent) or for prompt=allow over a stored deny.
	$issue = ( 'allow' === $granted && 'consent' !== $prompt ) || ( 'deny' === $granted && 'allow' === $prompt );
	if ( ! $issue ) {
		moserver_e2e_consent_page( $client, $scope );
		exit;
	}

	// 63, 64, 81: the code row, the meta back to deny, and the redirect.
	global $wpdb;
	$code = substr( hash( 'sha512', random_bytes( 100 ) ), 0, 40 );
	$wpdb->insert(
		$wpdb->base_prefix . 'moos_oauth_authorization_codes',
		array(
			'authorization_code' => $code,
			'client_id'          => $client_id,
			'user_id'            => $user_id,
			'redirect_uri'       => $redirect_uri,
			'expires'            => gmdate( 'Y-m-d H:i:s', time() + 30 ),
			'scope'              => $scope,
			'id_token'           => '',
		)
	);
	update_user_meta( $user_id, 'mo_oauth_server_granted_' . $client_id, 'deny' );
	$params = array( 'code' => $code );
	if ( '' !== $state ) {
		$params['state'] = $state;
	}
	moserver_e2e_redirect_json( $to, $params );
}

/** The consent form's POST (62, 82); anything else gets the empty 200 of 62b. */
function moserver_e2e_consent_post() {
	if ( empty( $_POST['mo_oauth_server_authorize_dialog'] ) || empty( $_POST['mo_oauth_server_authorize'] ) || ! is_user_logged_in() ) {
		return;
	}
	$choice = wp_unslash( $_POST['mo_oauth_server_authorize'] );
	if ( ! in_array( $choice, array( 'allow', 'deny' ), true ) ) {
		return;
	}
	$nonce = isset( $_POST[ 'mo_oauth_server_authorize_dialog_' . $choice . '_form_field' ] ) ? wp_unslash( $_POST[ 'mo_oauth_server_authorize_dialog_' . $choice . '_form_field' ] ) : '';
	if ( ! wp_verify_nonce( $nonce, 'mo_oauth_server_authorize_dialog_' . $choice . '_form' ) ) {
		return;
	}
	$client_id = isset( $_GET['client_id'] ) ? wp_unslash( $_GET['client_id'] ) : '';
	if ( 'deny' === $choice ) {
		// 82: to the first registered URI, without state.
		$client = moserver_e2e_client( $client_id );
		if ( $client ) {
			$registered = explode( ' ', (string) $client->redirect_uri );
			wp_redirect( $registered[0] . '?error=' . urlencode( 'Authorization was denied by the user.' ) );
		}
		return;
	}
	update_user_meta( get_current_user_id(), 'mo_oauth_server_granted_' . $client_id, 'allow' );
	// 62, 84: the GET parameters re-encoded as WordPress holds them (slashed,
	// but for state), then prompt=allow.
	$params = $_GET;
	if ( isset( $params['state'] ) ) {
		$params['state'] = wp_unslash( $params['state'] );
	}
	unset( $params['prompt'] );
	wp_redirect( home_url( '/wp-json/moserver/authorize' ) . '?' . http_build_query( $params ) . '&prompt=allow' );
}

/** The consent page: two forms posting back to this very URL (61). */
function moserver_e2e_consent_page( $client, $scope ) {
	header( 'Content-Type: text/html;charset=UTF-8' );
	echo '<!DOCTYPE html><html><head><title>Authorize ' . esc_html( $client->client_name ) . '</title></head><body>';
	echo '<p>' . esc_html( $client->client_name ) . ' asks for: ' . esc_html( $scope ) . '</p>';
	foreach ( array( 'allow', 'deny' ) as $choice ) {
		echo '<form action="" method="post">';
		wp_nonce_field( 'mo_oauth_server_authorize_dialog_' . $choice . '_form', 'mo_oauth_server_authorize_dialog_' . $choice . '_form_field' );
		echo '<input type="hidden" name="mo_oauth_server_authorize_dialog" value="1" />';
		echo '<input type="hidden" name="mo_oauth_server_authorize" value="' . esc_attr( $choice ) . '" />';
		echo '<input type="submit" value="' . esc_attr( ucfirst( $choice ) ) . '" />';
		echo '</form>';
	}
	echo '</body></html>';
}

function moserver_e2e_client( $client_id ) {
	global $wpdb;
	return $wpdb->get_row( $wpdb->prepare( 'SELECT * FROM ' . $wpdb->base_prefix . 'moos_oauth_clients WHERE client_id = %s', $client_id ) );
}

/** openid and offline_access always pass; other words must be rows of the scopes table. */
function moserver_e2e_scope_known( $scope ) {
	global $wpdb;
	$known = $wpdb->get_col( 'SELECT scope FROM ' . $wpdb->base_prefix . 'moos_oauth_scopes' );
	foreach ( explode( ' ', $scope ) as $word ) {
		if ( ! in_array( $word, array_merge( array( 'openid', 'offline_access' ), $known ), true ) ) {
			return false;
		}
	}
	return true;
}

/** The plugin's errors before a redirect URI is settled: HTTP 200 JSON (73-76). */
function moserver_e2e_json_error( $error, $description ) {
	header( 'Cache-Control: no-store' );
	wp_send_json( array( 'error' => $error, 'error_description' => $description ) );
}

function moserver_e2e_redirect_error( $to, $error, $description, $state ) {
	$params = array( 'error' => $error, 'error_description' => $description );
	if ( '' !== $state ) {
		$params['state'] = $state;
	}
	header( 'Cache-Control: no-store' );
	moserver_e2e_redirect_json( $to, $params );
}

/** Its OAuth library's redirect: 302, Content-Type application/json, no body (63, 77). */
function moserver_e2e_redirect_json( $to, $params ) {
	header( 'Location: ' . $to . ( false === strpos( $to, '?' ) ? '?' : '&' ) . http_build_query( $params ), true, 302 );
	header( 'Content-Type: application/json' );
	exit;
}
