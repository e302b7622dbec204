package mockdc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
)

// NewCommand returns the mockdc command: one process serves one datacenter.
func NewCommand(ctx context.Context) *cobra.Command {
	opts := DefaultOptions("")
	var listen, inventory string
	batch := true
	logOptions := logs.NewOptions()
	cmd := &cobra.Command{
		Use:   "mockdc --name=dc-west --listen=127.0.0.1:8080",
		Short: "A mock datacenter API for developing and testing Stargate",
		Long: `mockdc serves the datacenter API contract (pkg/datacenter/openapi.yaml) like a
real, imperfect datacenter: operations take time, capacity is limited, and faults
can be injected at start (flags) or at run time (POST /debug/faults). GET
/debug/ledger lists every execution it started; GET /debug/jobs every job, with
its state and when it ran. The batch endpoints (a changes feed of jobs and a
machine lookup, listed by GET /v1/capabilities) are on unless
--batch-endpoints=false.`,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q", args)
			}
			opts.NoBatch = !batch
			if err := logsapi.ValidateAndApply(logOptions, nil); err != nil {
				return err
			}
			if inventory != "" {
				machines, err := LoadInventory(inventory)
				if err != nil {
					return err
				}
				opts.Inventory = machines
			}
			return run(cmd.Context(), opts, listen)
		},
	}
	cmd.SetContext(ctx)
	fs := cmd.Flags()
	fs.StringVar(&opts.Name, "name", "dc-west", "Name of the datacenter; prefixes job IDs.")
	fs.StringVar(&listen, "listen", "127.0.0.1:8080", "Address to serve on.")
	fs.StringVar(&opts.TokenFile, "token-file", "", "File holding the bearer token clients must send. Unset: no authentication (a warning is logged).")
	fs.DurationVar(&opts.RepaveDuration, "repave-duration", opts.RepaveDuration, "How long a repave takes.")
	fs.DurationVar(&opts.RebootDuration, "reboot-duration", opts.RebootDuration, "How long a reboot takes.")
	fs.DurationVar(&opts.PowerDuration, "power-duration", opts.PowerDuration, "How long power-off and power-on take.")
	fs.IntVar(&opts.MaxRunning, "max-running", opts.MaxRunning, "Jobs running at once; more queue.")
	fs.BoolVar(&opts.RejectWhenFull, "reject-when-full", false, "Answer 429 with Retry-After instead of queueing when at --max-running.")
	fs.StringVar(&inventory, "inventory", "", "YAML list of known machines ({mac, name, ipv4, powerState, currentOS}).")
	fs.StringVar(&opts.StateFile, "state-file", "", "File that keeps jobs, machines and the ledger across restarts.")
	fs.Float64Var(&opts.Faults.ErrorRate, "error-rate", 0, "Fraction of API requests answered 500.")
	fs.DurationVar(&opts.Faults.Latency.Duration, "latency", 0, "Delay added to every API request.")
	fs.Float64Var(&opts.Faults.TimeoutRate, "timeout-rate", 0, "Fraction of API requests accepted and never answered.")
	fs.Float64Var(&opts.Faults.DropAfterAcceptRate, "drop-after-accept-rate", 0, "Fraction of job submissions started but left unanswered.")
	fs.Float64Var(&opts.Faults.JobFailureRate, "job-failure-rate", 0, "Fraction of jobs that fail.")
	fs.BoolVar(&opts.Faults.Outage, "outage", false, "Start in a full outage (503 for everything).")
	fs.Uint64Var(&opts.Seed, "seed", 0, "Seed of fault injection (0: random).")
	fs.BoolVar(&batch, "batch-endpoints", true, "Offer the batch endpoints (GET /v1/capabilities, the changes feed GET /v1/jobs?changedSince=, "+
		"POST /v1/machines:lookup). False: answer like a datacenter that implements only the core contract.")
	fs.IntVar(&opts.ChangeRetention, "change-retention", DefaultChangeRetention, "Job changes the changes feed keeps; a follower further behind gets 410 Gone.")
	logsapi.AddFlags(logOptions, fs)
	return cmd
}

func run(ctx context.Context, opts Options, listen string) error {
	logger := klog.FromContext(ctx).WithValues("datacenter", opts.Name)
	if opts.TokenFile == "" {
		logger.Info("WARNING: no --token-file: authentication is OFF, anyone who can reach " + listen + " can repave machines")
	}
	s, err := New(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	logger.Info("Mock datacenter serving", "address", ln.Addr().String(), "repave", opts.RepaveDuration,
		"maxRunning", opts.MaxRunning, "stateFile", opts.StateFile, "batchEndpoints", !opts.NoBatch)
	errCh := make(chan error, 1)
	go func() { errCh <- srv.Serve(ln) }()
	select {
	case err := <-errCh:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
