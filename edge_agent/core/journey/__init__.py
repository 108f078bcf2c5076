"""The journey rules (what the store does for a recognised shopper) and the guards every
customer notification passes: consent, quiet hours, caps, minimum gap."""
