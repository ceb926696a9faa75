module github.com/lockkit/lockkit/cmd/lockkit/ptytest

go 1.26.8

require github.com/creack/pty v1.1.24
