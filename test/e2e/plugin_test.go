//go:build e2e

package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var updateScreens = flag.Bool("update-screens", false, "rewrite the terminal screens in testdata/")

var (
	pluginOnce sync.Once
	pluginDir  string
	pluginErr  error
)

// pluginPath builds kubectl-stargate once and returns a PATH on which real
// kubectl finds it as `kubectl stargate`.
func pluginPath(t *testing.T) string {
	t.Helper()
	pluginOnce.Do(func() {
		pluginDir = filepath.Join(env.Work, "plugin")
		cmd := exec.Command("go", "build", "-o", pluginDir+"/", "./cmd/kubectl-stargate")
		cmd.Dir = env.Root
		if out, err := cmd.CombinedOutput(); err != nil {
			pluginErr = fmt.Errorf("go build ./cmd/kubectl-stargate: %v\n%s", err, out)
		}
	})
	if pluginErr != nil {
		t.Fatal(pluginErr)
	}
	return pluginDir + string(os.PathListSeparator) + filepath.Dir(env.Bin["kubectl"]) + string(os.PathListSeparator) + os.Getenv("PATH")
}

// terminal is a tmux session of a fixed size in which a test types commands
// and reads the screen, as a person at a terminal would.
type terminal struct {
	t    *testing.T
	name string
}

// startTerminal opens a width x height tmux session running bash with env
// added to its environment (KUBECONFIG, PATH); it is killed when the test ends.
func startTerminal(t *testing.T, width, height int, env ...string) *terminal {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed")
	}
	term := &terminal{t: t, name: fmt.Sprintf("stargate-e2e-%d", time.Now().UnixNano())}
	// env(1) rather than tmux -e: the shell tmux starts the command with may
	// reset PATH.
	args := []string{"new-session", "-d", "-s", term.name, "-x", fmt.Sprint(width), "-y", fmt.Sprint(height), "env"}
	args = append(args, env...)
	args = append(args, "bash", "--norc", "--noprofile")
	term.tmux(args...)
	// Wider than the session's client would otherwise allow.
	term.tmux("set-option", "-t", term.name, "window-size", "manual")
	term.tmux("resize-window", "-t", term.name, "-x", fmt.Sprint(width), "-y", fmt.Sprint(height))
	t.Cleanup(func() { _ = exec.Command("tmux", "kill-session", "-t", term.name).Run() })
	term.sendKeys("PS1='$ '", "Enter", "clear", "Enter")
	return term
}

func (term *terminal) tmux(args ...string) string {
	term.t.Helper()
	out, err := exec.Command("tmux", args...).CombinedOutput()
	if err != nil {
		term.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sendKeys types keys (tmux key names such as Enter or C-c, or text).
func (term *terminal) sendKeys(keys ...string) {
	term.t.Helper()
	term.tmux(append([]string{"send-keys", "-t", term.name}, keys...)...)
}

// run types a command line and Enter.
func (term *terminal) run(line string) {
	term.t.Helper()
	term.sendKeys(line, "Enter")
}

// screen is what the terminal shows now, trailing blank lines and blanks trimmed.
func (term *terminal) screen() string {
	term.t.Helper()
	lines := strings.Split(term.tmux("capture-pane", "-p", "-t", term.name), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n") + "\n"
}

// waitFor returns the screen once it shows want, or fails after timeout.
func (term *terminal) waitFor(want string, timeout time.Duration) string {
	term.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := term.screen()
		if strings.Contains(s, want) {
			return s
		}
		if time.Now().After(deadline) {
			term.t.Fatalf("the terminal did not show %q within %s; it shows:\n%s", want, timeout, s)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// matchScreen compares a screen with testdata/name, or writes it with
// -update-screens.
func matchScreen(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateScreens {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run with -update-screens to record this screen:\n%s", err, got)
	}
	if got != string(want) {
		t.Errorf("the screen differs from %s (-update-screens rewrites it):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// TestPluginThroughKubectl: real kubectl finds kubectl-stargate on PATH, and
// the plugin reaches Stargate through kube-apiserver with the kubeconfig's
// credentials (a server-side dry run of a repave changes nothing).
func TestPluginThroughKubectl(t *testing.T) {
	applySamples(t)
	term := startTerminal(t, 160, 30, "KUBECONFIG="+env.Kubeconfigs["admin"], "PATH="+pluginPath(t))
	term.run("kubectl stargate --help | head -3")
	term.waitFor("kubectl stargate works with Stargate", 30*time.Second)
	term.run(`clear; kubectl stargate repave server-001 -n dc-west --template os-2-0-0 --dry-run=server; echo "repave""-exit=$?"`)
	s := term.waitFor("repave-exit=", 60*time.Second)
	// The Job's name comes from the answer's status.job.
	if !strings.Contains(s, "repave-exit=0") || !strings.Contains(s, "created (server dry run)") {
		t.Errorf("kubectl stargate repave --dry-run=server:\n%s", s)
	}
}

// TestPluginLiveView follows a Campaign over the sample Hardware in a real
// terminal and checks the screen it ends on against testdata/. The
// Campaign reboots (a repave would change the servers' OS, which the seed's
// walk-through, later, starts from).
func TestPluginLiveView(t *testing.T) {
	applySamples(t)
	manifest := filepath.Join(t.TempDir(), "campaign.yaml")
	if err := os.WriteFile(manifest, []byte(`apiVersion: stargate.io/v1alpha1
kind: Campaign
metadata:
  name: e2e-live-view
spec:
  operation: reboot
  datacenterSelector:
    matchLabels:
      stargate.io/datacenter: dc-west
  maxUnavailable:
    perDatacenter: 1
`), 0o600); err != nil {
		t.Fatal(err)
	}
	term := startTerminal(t, 120, 12, "KUBECONFIG="+env.Kubeconfigs["admin"], "PATH="+pluginPath(t))
	// Each marker is split in the command typed ("create""-exit"), so only
	// the shell's output, not the echo of the typed line, matches it.
	term.run("kubectl create -f " + manifest + `; echo "create""-exit=$?"`)
	if s := term.waitFor("create-exit=", 60*time.Second); !strings.Contains(s, "create-exit=0") {
		t.Fatalf("kubectl create of the Campaign:\n%s", s)
	}
	term.run(`clear; kubectl stargate status campaign/e2e-live-view; echo "status""-exit=$?"`)
	s := term.waitFor("status-exit=", 5*time.Minute)
	if !strings.Contains(s, "successfully completed") || !strings.Contains(s, "status-exit=0") {
		t.Fatalf("kubectl stargate status did not end on Complete:\n%s", s)
	}
	matchScreen(t, "plugin-live-view.txt", s)
}
