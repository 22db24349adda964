"""Users (profiles): fields, activity, contacts, subscriptions, promo codes."""
