//go:build e2e

// Package e2e runs Stargate behind a real kube-apiserver (built from
// k8s.io/kubernetes by hack/build-cluster-tools.sh) on a real etcd, and drives
// it with a real kubectl, as an operator would. Everything listens on
// 127.0.0.1; `make test-e2e` runs it. The cluster is test/framework's.
package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"stargate.io/stargate/test/framework"
)

var env *framework.Cluster

func TestMain(m *testing.M) {
	var err error
	env, err = framework.Start("../..", framework.Options{})
	code := 1
	if err == nil {
		code = m.Run()
	} else {
		fmt.Fprintln(os.Stderr, "e2e: starting the cluster:", err)
	}
	if env != nil {
		if code != 0 {
			env.DumpLogs()
		}
		env.Stop()
		if code == 0 {
			os.RemoveAll(env.Work)
		}
	}
	os.Exit(code)
}

// ok runs kubectl as user and fails the test, with kubectl's output, when it fails.
func ok(t *testing.T, user string, args ...string) string {
	t.Helper()
	out, err := env.Kubectl(user, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
