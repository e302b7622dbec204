// Package dcclients gives the controllers one datacenter API client per
// Datacenter, authenticated with its token file.
package dcclients

import (
	"os"
	"path/filepath"
	"sync"
	"time"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/controller/metrics"
	"stargate.io/stargate/pkg/datacenter"
)

// ClientFor returns the datacenter client of a Datacenter.
type ClientFor func(dc *v1alpha1.Datacenter) (datacenter.Client, error)

// HTTPClients returns a ClientFor that builds one HTTP client per Datacenter
// endpoint, with the token file <credentialsDir>/<datacenter name> when it
// exists; every attempt is timed in stargate_datacenter_request_duration_seconds.
func HTTPClients(credentialsDir string) ClientFor {
	var mu sync.Mutex
	clients := map[string]datacenter.Client{}
	return func(dc *v1alpha1.Datacenter) (datacenter.Client, error) {
		mu.Lock()
		defer mu.Unlock()
		key := dc.Name + "\x00" + dc.Spec.Endpoint
		if c, ok := clients[key]; ok {
			return c, nil
		}
		name := dc.Name
		cfg := datacenter.Config{Endpoint: dc.Spec.Endpoint, Observer: func(_ string, code int, elapsed time.Duration) {
			metrics.ObserveDatacenterRequest(name, code, elapsed)
		}}
		if credentialsDir != "" {
			if token := filepath.Join(credentialsDir, dc.Name); fileExists(token) {
				cfg.TokenFile = token
			}
		}
		c, err := datacenter.New(cfg)
		if err != nil {
			return nil, err
		}
		clients[key] = c
		return c, nil
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
