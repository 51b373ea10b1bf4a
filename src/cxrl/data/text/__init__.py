"""Report text: sentence splitting, the rule-based report labeler, and the IU X-ray report reader."""
