<?php
/**
 * The only template of the moserver e2e theme: the site title and the posts,
 * with wp_head() so that WordPress prints <title> and its REST discovery link.
 */
?><!DOCTYPE html>
<html <?php language_attributes(); ?>>
<head>
<meta charset="<?php bloginfo( 'charset' ); ?>">
<?php wp_head(); ?>
</head>
<body <?php body_class(); ?>>
<h1 class="site-title"><?php bloginfo( 'name' ); ?></h1>
<?php
while ( have_posts() ) {
	the_post();
	the_title( '<h2 class="entry-title">', '</h2>' );
}
wp_footer();
?>
</body>
</html>
