<?php
/**
 * A probe for integration/wordpress_routes_test.go: on a request carrying the
 * header X-E2E-Route-Probe, the REST routes moserver/token, revoke, jwks,
 * introspect and resource exist and answer which of them WordPress routed the
 * request to, with the route and method WordPress saw. Without the header (every other
 * test) there is no moserver route at all, as without the plugin.
 */

add_action(
	'rest_api_init',
	function () {
		if ( empty( $_SERVER['HTTP_X_E2E_ROUTE_PROBE'] ) ) {
			return;
		}
		foreach ( array( 'token', 'revoke', 'jwks', 'introspect', 'resource' ) as $endpoint ) {
			register_rest_route(
				'moserver',
				'/' . $endpoint,
				array(
					'methods'             => WP_REST_Server::ALLMETHODS,
					'permission_callback' => '__return_true',
					'callback'            => function ( WP_REST_Request $request ) use ( $endpoint ) {
						return array(
							'moserver_e2e_probe' => $endpoint,
							'route'              => $request->get_route(),
							'method'             => $request->get_method(),
						);
					},
				)
			);
		}
	}
);
