package wordpress

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-sql-driver/mysql"
)

// The plugin creates its code and token tables without any index, so every
// lookup of a code or a token reads the table from the start: an exchange
// costs more the more codes wait in the table, and a table of a few hundred
// thousand rows makes each one take longer than a request may. An index on
// the column looked up removes the scan; the queries of this package are
// written so that one is used when it exists (see exactly).

// tokenIndex is an index this package can add: on column of table.
type tokenIndex struct {
	table, column, name string
}

// indexPrefixChars is how many leading characters of a code or token the
// indexes hold: more than the plugin's codes (40) and tokens (32), and few
// enough bytes (256 in utf8mb4) for any row format of MariaDB or MySQL.
const indexPrefixChars = 64

// tokenIndexes are the columns this package looks codes and tokens up by.
func (d *DB) tokenIndexes() []tokenIndex {
	return []tokenIndex{
		{d.prefix + tblCodes, "authorization_code", "moserver_authorization_code"},
		{d.prefix + tblAccess, "access_token", "moserver_access_token"},
		{d.prefix + tblRefresh, "refresh_token", "moserver_refresh_token"},
	}
}

// MissingIndexes returns, as "table.column", each column of the plugin's
// tables that codes and tokens are looked up by and that no index starts
// with. Tables that do not exist are left out.
func (d *DB) MissingIndexes(ctx context.Context) ([]string, error) {
	missing, err := d.unindexed(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(missing))
	for i, ix := range missing {
		names[i] = ix.String()
	}
	return names, nil
}

// EnsureIndexes adds an index to each column MissingIndexes reports and
// returns them, as "table.column". Each is one ALTER TABLE ... ADD INDEX,
// which MariaDB and MySQL build in place while the table stays readable and
// writable; on a large table that takes a while, so ctx should allow it.
// An index another process added meanwhile is not an error. It stops at the
// first error (the database user may lack the ALTER privilege), returning
// what it added before it.
func (d *DB) EnsureIndexes(ctx context.Context) ([]string, error) {
	missing, err := d.unindexed(ctx)
	if err != nil {
		return nil, err
	}
	var added []string
	for _, ix := range missing {
		_, err = d.sql.ExecContext(ctx, fmt.Sprintf("ALTER TABLE %s ADD INDEX `%s` (`%s`(%d))",
			table(ix.table, ""), ix.name, ix.column, indexPrefixChars))
		var me *mysql.MySQLError
		switch {
		case errors.As(err, &me) && me.Number == 1061: // ER_DUP_KEYNAME: added by another process
		case err != nil:
			return added, fmt.Errorf("wordpress: index %s: %w", ix, err)
		default:
			added = append(added, ix.String())
		}
	}
	return added, nil
}

// String is "table.column".
func (ix tokenIndex) String() string { return ix.table + "." + ix.column }

// unindexed returns the indexes of tokenIndexes whose table exists and has
// no index starting with their column.
func (d *DB) unindexed(ctx context.Context) ([]tokenIndex, error) {
	var missing []tokenIndex
	for _, ix := range d.tokenIndexes() {
		exists, indexed, err := d.indexState(ctx, ix)
		if err != nil {
			return nil, err
		}
		if exists && !indexed {
			missing = append(missing, ix)
		}
	}
	return missing, nil
}

// indexState reports whether ix's table exists in the connection's
// database and whether an index starts with ix's column.
func (d *DB) indexState(ctx context.Context, ix tokenIndex) (exists, indexed bool, err error) {
	var tables, indexes int
	err = d.sql.QueryRowContext(ctx,
		"SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?),"+
			" (SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?"+
			" AND COLUMN_NAME = ? AND SEQ_IN_INDEX = 1)",
		ix.table, ix.table, ix.column).Scan(&tables, &indexes)
	if err != nil {
		return false, false, fmt.Errorf("wordpress: read the indexes of %s: %w", ix.table, err)
	}
	return tables > 0, indexes > 0, nil
}
