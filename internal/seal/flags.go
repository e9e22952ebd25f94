package seal

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"
)

// IndexFlag declares --seal-index, the sealer's index (AUDIT_SEAL_INDEX), for every command that
// reads or writes the signed logs.
func IndexFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("AUDIT_SEAL_INDEX")
	if def == "" {
		def = DefaultIndex
	}
	return fs.String("seal-index", def, "index of the signed logs' trees (AUDIT_SEAL_INDEX)")
}

// SealerFlags are the flags of a process that seals: the signer key and how often.
type SealerFlags struct {
	Key      *string
	Interval *time.Duration
}

// RegisterSealerFlags declares --seal-key and --seal-interval.
func RegisterSealerFlags(fs *flag.FlagSet, keyUsage string) SealerFlags {
	return SealerFlags{
		Key:      fs.String("seal-key", os.Getenv("AUDIT_SEAL_KEY"), keyUsage+" (AUDIT_SEAL_KEY; or the key itself in AUDIT_SEAL_SIGNER_KEY)"),
		Interval: fs.Duration("seal-interval", DefaultInterval, "how often the sealer looks for new events (events are sealed within about two of these)"),
	}
}

// Enabled tells whether a signer key was given, in a file or the environment.
func (f SealerFlags) Enabled() bool { return *f.Key != "" || os.Getenv("AUDIT_SEAL_SIGNER_KEY") != "" }

// Sealer builds the sealer the flags describe: the signer keys from --seal-key's file, or from
// AUDIT_SEAL_SIGNER_KEY; the origin is the keys' name.
func (f SealerFlags) Sealer(store *Store) (*Sealer, error) {
	text := []byte(os.Getenv("AUDIT_SEAL_SIGNER_KEY"))
	if *f.Key != "" {
		b, err := os.ReadFile(*f.Key)
		if err != nil {
			return nil, fmt.Errorf("--seal-key: %w", err)
		}
		text = b
	}
	signers, err := Signers(text)
	if err != nil {
		return nil, fmt.Errorf("--seal-key: %w", err)
	}
	if *f.Interval <= 0 {
		return nil, errors.New("--seal-interval: must be above 0")
	}
	s, err := New(Config{Store: store, Origin: signers[0].Name(), Signers: signers, Interval: *f.Interval})
	if err != nil {
		return nil, fmt.Errorf("--seal-key: %w", err)
	}
	return s, nil
}
