// nettest: a tiny static tool for the cluster smoke test.
//
//	nettest serve [addr]            TCP echo-ish server: writes "hello from $HOSTNAME\n" and closes
//	nettest lookup NAME...          resolves each name (through /etc/resolv.conf), exits 1 if any fails
//	nettest connect HOST:PORT...    connects, prints the first line received, exits 1 on failure
//	nettest dial HOST:PORT...       connects only (for servers that do not speak first)
//	nettest write FILE TEXT         writes TEXT to FILE, then sleeps (a volume check)
//	nettest cat FILE...             prints files (e.g. the container's cgroup memory limit)
//	nettest alloc MIB               touches MIB MiB of memory, then sleeps (an OOM check)
//	nettest sleep                   sleeps forever (a container to exec into)
package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: nettest serve|lookup|connect|sleep ...")
		os.Exit(2)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "serve":
		addr := ":8080"
		if len(args) > 0 {
			addr = args[0]
		}
		serve(addr)
	case "lookup":
		os.Exit(lookup(args))
	case "connect":
		os.Exit(connect(args))
	case "dial":
		os.Exit(dial(args))
	case "write":
		if len(args) != 2 {
			fmt.Fprintln(os.Stderr, "usage: nettest write FILE TEXT")
			os.Exit(2)
		}
		if err := os.WriteFile(args[0], []byte(args[1]+"\n"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("wrote", args[0])
		waitSignal()
	case "cat":
		for _, f := range args {
			b, err := os.ReadFile(f)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			os.Stdout.Write(b)
		}
	case "alloc":
		var mib int
		if len(args) != 1 {
			fmt.Fprintln(os.Stderr, "usage: nettest alloc MIB")
			os.Exit(2)
		}
		fmt.Sscan(args[0], &mib)
		chunks := make([][]byte, 0, mib)
		for i := 0; i < mib; i++ {
			c := make([]byte, 1<<20)
			for j := range c {
				c[j] = byte(j)
			}
			chunks = append(chunks, c)
		}
		fmt.Println("allocated", len(chunks), "MiB")
		waitSignal()
	case "sleep":
		waitSignal()
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}

func waitSignal() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
}

func serve(addr string) {
	host, _ := os.Hostname()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening on", addr)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				continue
			}
			fmt.Fprintf(c, "hello from %s\n", host)
			c.Close()
		}
	}()
	waitSignal()
}

func lookup(names []string) int {
	rc := 0
	r := &net.Resolver{PreferGo: true}
	for _, n := range names {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		addrs, err := r.LookupHost(ctx, n)
		cancel()
		if err != nil {
			fmt.Printf("FAIL %s: %v\n", n, err)
			rc = 1
			continue
		}
		fmt.Printf("OK %s %v\n", n, addrs)
	}
	return rc
}

func connect(targets []string) int {
	rc := 0
	for _, t := range targets {
		c, err := net.DialTimeout("tcp", t, 5*time.Second)
		if err != nil {
			fmt.Printf("FAIL %s: %v\n", t, err)
			rc = 1
			continue
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			fmt.Printf("FAIL %s: read: %v\n", t, err)
			rc = 1
			continue
		}
		fmt.Printf("OK %s %s", t, line)
	}
	return rc
}

func dial(targets []string) int {
	rc := 0
	for _, t := range targets {
		c, err := net.DialTimeout("tcp", t, 5*time.Second)
		if err != nil {
			fmt.Printf("FAIL %s: %v\n", t, err)
			rc = 1
			continue
		}
		c.Close()
		fmt.Printf("OK %s\n", t)
	}
	return rc
}
