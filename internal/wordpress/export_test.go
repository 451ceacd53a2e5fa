package wordpress

import "database/sql"

// LoadCount returns how many loads of the clients the registry has started
// (each is one round of three queries).
func (r *Registry) LoadCount() int64 { return r.loads.Load() }

// SQL returns the underlying pool.
func (d *DB) SQL() *sql.DB { return d.sql }
