package lockkit

// DataLocker is implemented by Lockers whose holders can carry free-form
// data ([Holder.Data]) chosen per acquire, not only per Locker.
//
// WithData returns a Locker on the same locks whose acquires store data as
// the holder's Data, where a [Lister] and a [HeldError] show it. It is the
// same lock space with another label: a lock taken through it excludes, and
// is excluded by, the same name taken through the original Locker or any
// other view. Data the backend cannot store (too long, not valid UTF-8) is
// refused by the view's acquires with an error matching [ErrInvalid], before
// any I/O. An empty data means the Locker's own default.
//
// Package election publishes a leader's value this way.
type DataLocker interface {
	Locker
	// WithData returns a Locker on the same lock space whose acquires
	// record data as the holder's data.
	WithData(data string) Locker
}
