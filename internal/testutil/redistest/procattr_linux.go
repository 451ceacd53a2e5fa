package redistest

import "syscall"

// procAttr makes the kernel kill redis-server if the test binary dies before
// its cleanup runs, so no server outlives a crashed or timed-out test.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
